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
