#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "kvrdma/options.h"

using kvrdma::Code;

TEST_CASE("every server setting in the table applies with its default", "[settings]") {
  kvrdma::ServerOptions server;
  kvrdma::ClientOptions client;
  std::set<std::string> names;
  for (const auto& s : kvrdma::settings()) {
    INFO(s.name);
    CHECK(names.insert(s.name).second);  // no duplicate names
    std::string value = s.default_value;
    if (std::string(s.name) == "log-level") value = "info";
    if (std::string(s.name) == "fabric-iface") value = "lo";
    if (s.roles & kvrdma::kServerSetting) CHECK(kvrdma::apply_setting(server, s.name, value).is_ok());
    if (s.roles & kvrdma::kClientSetting) CHECK(kvrdma::apply_setting(client, s.name, value).is_ok());
  }
}

TEST_CASE("settings parse into options", "[settings]") {
  kvrdma::ServerOptions o;
  REQUIRE(kvrdma::apply_setting(o, "memory-mb", "16").is_ok());
  CHECK(o.memory_bytes == 16ull << 20);
  REQUIRE(kvrdma::apply_setting(o, "mock", "false").is_ok());
  CHECK_FALSE(o.transport.mock);
  REQUIRE(kvrdma::apply_setting(o, "eviction", "none").is_ok());
  CHECK(o.eviction == kvrdma::Eviction::kNone);
  REQUIRE(kvrdma::apply_setting(o, "inline-threshold", "4K").is_ok());
  CHECK(o.inline_threshold == 4096);
  REQUIRE(kvrdma::apply_setting(o, "node-id", "7").is_ok());
  CHECK(o.node_id == 7);
}

TEST_CASE("bad settings are INVALID_ARGUMENT naming the setting", "[settings]") {
  kvrdma::ServerOptions s;
  kvrdma::ClientOptions c;
  auto st = kvrdma::apply_setting(s, "memory-mb", "lots");
  CHECK(st.code() == Code::kInvalidArgument);
  CHECK(st.message().find("memory-mb") != std::string::npos);
  CHECK(kvrdma::apply_setting(s, "eviction", "fifo").code() == Code::kInvalidArgument);
  CHECK(kvrdma::apply_setting(s, "no-such-thing", "1").code() == Code::kInvalidArgument);
  CHECK(kvrdma::apply_setting(s, "buffer-mb", "1").code() == Code::kInvalidArgument);
  CHECK(kvrdma::apply_setting(c, "memory-mb", "1").code() == Code::kInvalidArgument);
  CHECK(kvrdma::apply_setting(c, "timeout-ms", "0").code() == Code::kInvalidArgument);
  CHECK(kvrdma::apply_setting(c, "mock", "perhaps").code() == Code::kInvalidArgument);
}

TEST_CASE("cluster settings parse into options and check their values", "[settings][cluster]") {
  kvrdma::ServerOptions o;
  CHECK(o.cluster.empty());  // cluster mode is off unless asked for
  CHECK(o.node_lease_ms == 5000);
  REQUIRE(kvrdma::apply_setting(o, "cluster", "prod-eu.1_a").is_ok());
  CHECK(o.cluster == "prod-eu.1_a");
  REQUIRE(kvrdma::apply_setting(o, "cluster", "").is_ok());
  CHECK(o.cluster.empty());
  REQUIRE(kvrdma::apply_setting(o, "etcd-endpoints",
                                "http://127.0.0.1:2379,10.0.0.2:2379").is_ok());
  CHECK(o.etcd_endpoints == "http://127.0.0.1:2379,10.0.0.2:2379");
  REQUIRE(kvrdma::apply_setting(o, "advertise-addr", "10.0.0.5:50051").is_ok());
  CHECK(o.advertise_addr == "10.0.0.5:50051");
  REQUIRE(kvrdma::apply_setting(o, "node-lease-ms", "1000").is_ok());
  CHECK(o.node_lease_ms == 1000);
  REQUIRE(kvrdma::apply_setting(o, "node-lease-ms", "600000").is_ok());
  CHECK(o.node_lease_ms == 600000);

  SECTION("bad values are refused naming the setting, and leave the option as it was") {
    for (const char* bad : {"a/b", "has space", "x{y}"}) {
      INFO(bad);
      auto st = kvrdma::apply_setting(o, "cluster", bad);
      CHECK(st.code() == Code::kInvalidArgument);
      CHECK(st.message().find("'cluster'") != std::string::npos);
    }
    CHECK(kvrdma::apply_setting(o, "cluster", std::string(65, 'c')).code() ==
          Code::kInvalidArgument);
    for (const char* bad : {"localhost", "a:1,,b:2", "a:1,", ",a:1"}) {
      INFO(bad);
      CHECK(kvrdma::apply_setting(o, "etcd-endpoints", bad).code() == Code::kInvalidArgument);
    }
    CHECK(o.etcd_endpoints == "http://127.0.0.1:2379,10.0.0.2:2379");
    CHECK(kvrdma::apply_setting(o, "advertise-addr", "nohost").code() == Code::kInvalidArgument);
    CHECK(kvrdma::apply_setting(o, "advertise-addr", "host:").code() == Code::kInvalidArgument);
    CHECK(o.advertise_addr == "10.0.0.5:50051");
    auto low = kvrdma::apply_setting(o, "node-lease-ms", "999");
    CHECK(low.code() == Code::kInvalidArgument);
    CHECK(low.message().find("1000 to 600000") != std::string::npos);
    CHECK(kvrdma::apply_setting(o, "node-lease-ms", "600001").code() == Code::kInvalidArgument);
    CHECK(o.node_lease_ms == 600000);
  }
  SECTION("they are server settings: a client refuses them") {
    kvrdma::ClientOptions c;
    for (const char* name : {"cluster", "etcd-endpoints", "advertise-addr", "node-lease-ms"}) {
      INFO(name);
      auto st = kvrdma::apply_setting(c, name, "x:1");
      CHECK(st.code() == Code::kInvalidArgument);
      CHECK(st.message().find("applies to the server only") != std::string::npos);
    }
  }
}
