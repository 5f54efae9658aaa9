#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "kvrdma/options.h"

using kvrdma::Code;

namespace {

template <typename Options>
void check_row(const kvrdma::SettingInfo& s, const char* type) {
  INFO(type << " " << s.name);
  const Options defaults;
  auto text = kvrdma::setting_value(defaults, s.name);
  REQUIRE(text.is_ok());
  // The struct is the one source of the default: the table shows what the struct holds...
  if (std::string(s.name) != "log-level") CHECK(*text == s.default_value);
  CHECK(std::string(s.default_value).find(*text) != std::string::npos);
  // ...and applying the shown default to fresh options changes nothing.
  Options o;
  REQUIRE(kvrdma::apply_setting(o, s.name, *text).is_ok());
  auto again = kvrdma::setting_value(o, s.name);
  REQUIRE(again.is_ok());
  CHECK(*again == *text);
  CHECK(kvrdma::validate(o).is_ok());
  const std::string kind = s.type;
  if (kind != "int" && kind != "bytes") {
    CHECK(s.min_value == 0);
    CHECK(s.max_value == 0);
    return;
  }
  // The default lies within the range the table holds once, and the range is what is enforced.
  const uint64_t value = std::stoull(*text);
  CHECK(value >= s.min_value);
  CHECK(value <= s.max_value);
  CHECK(kvrdma::apply_setting(o, s.name, std::to_string(s.min_value)).is_ok());
  CHECK(kvrdma::validate(o).is_ok());
  CHECK(kvrdma::apply_setting(o, s.name, std::to_string(s.max_value)).is_ok());
  CHECK(kvrdma::validate(o).is_ok());
  CHECK(*kvrdma::setting_value(o, s.name) == std::to_string(s.max_value));
  if (s.min_value > 0) {
    auto low = kvrdma::apply_setting(o, s.name, std::to_string(s.min_value - 1));
    CHECK(low.code() == Code::kInvalidArgument);
    CHECK(low.message().find(std::string("'") + s.name + "'") != std::string::npos);
  }
  if (s.max_value < UINT64_MAX) {
    auto high = kvrdma::apply_setting(o, s.name, std::to_string(s.max_value + 1));
    CHECK(high.code() == Code::kInvalidArgument);
    CHECK(*kvrdma::setting_value(o, s.name) == std::to_string(s.max_value));  // left as it was
  }
  // The help shows the same range, from the same row.
  const std::string help = kvrdma::setting_help(s);
  CHECK(help.starts_with(s.description));
  if (kind == "int") {
    CHECK(help.ends_with(" [" + std::to_string(s.min_value) + " to " + std::to_string(s.max_value) +
                         "]"));
  }
}

}  // namespace

TEST_CASE("every setting's default, range and help come from one place and agree", "[settings]") {
  std::set<std::string> names;
  for (const auto& s : kvrdma::settings()) {
    INFO(s.name);
    CHECK(names.insert(s.name).second);  // no duplicate names
    CHECK(kvrdma::find_setting(s.name) == &s);
    CHECK(std::string(s.member).size() > 0);
    CHECK(s.roles != 0);
    if (s.roles & kvrdma::kServerSetting) check_row<kvrdma::ServerOptions>(s, "server");
    if (s.roles & kvrdma::kClientSetting) check_row<kvrdma::ClientOptions>(s, "client");
  }
  CHECK(std::string(kvrdma::find_setting("log-level")->default_value) ==
        "info (server), warn (client)");
  CHECK(std::string(kvrdma::find_setting("inline-threshold")->default_value) ==
        std::to_string(kvrdma::ServerOptions().inline_threshold));
  CHECK(kvrdma::find_setting("no-such-setting") == nullptr);
}

TEST_CASE("validate names the C++ member and the setting of a value out of range", "[settings]") {
  kvrdma::ServerOptions s;
  CHECK(kvrdma::validate(s).is_ok());
  s.lease_ms = 5;
  auto st = kvrdma::validate(s);
  CHECK(st.code() == Code::kInvalidArgument);
  CHECK(st.message() ==
        "ServerOptions::lease_ms / lease-ms is 5, outside 100 to 86400000; set it within that "
        "range");
  s = kvrdma::ServerOptions();
  s.memory_bytes = 1000;  // below 1 MiB
  CHECK(kvrdma::validate(s).message().find("ServerOptions::memory_bytes / memory-mb is 1000, "
                                           "outside 1048576 to") != std::string::npos);
  s = kvrdma::ServerOptions();
  s.listen_addr = "nohost";
  CHECK(kvrdma::validate(s).message().find("ServerOptions::listen_addr") != std::string::npos);
  kvrdma::ClientOptions c;
  CHECK(kvrdma::validate(c).is_ok());
  c.transport.num_domains = 0;
  CHECK(kvrdma::validate(c).message() ==
        "ClientOptions::transport.num_domains / num-domains is 0, outside 1 to 64; set it within "
        "that range");
  c = kvrdma::ClientOptions();
  c.security.auth_token = std::string("bad\nline");
  auto token = kvrdma::validate(c);
  CHECK(token.code() == Code::kInvalidArgument);
  CHECK(token.message().find("ClientOptions::security.auth_token / auth-token") !=
        std::string::npos);
  CHECK(kvrdma::option_name("lease-ms", kvrdma::kServerSetting) ==
        "ServerOptions::lease_ms / lease-ms");
  CHECK(kvrdma::option_name("mock", kvrdma::kClientSetting) ==
        "ClientOptions::transport.mock / mock");
  CHECK(token.message().find("bad") == std::string::npos);  // a token never shows in a message
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
  REQUIRE(
      kvrdma::apply_setting(o, "etcd-endpoints", "http://127.0.0.1:2379,10.0.0.2:2379").is_ok());
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
