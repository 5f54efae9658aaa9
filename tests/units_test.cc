#include <catch2/catch.hpp>

#include "common/units.h"

using kvrdma::Code;

TEST_CASE("parse_bytes accepts plain numbers and binary suffixes", "[units]") {
  CHECK(*kvrdma::parse_bytes("4096") == 4096);
  CHECK(*kvrdma::parse_bytes("64K") == 65536);
  CHECK(*kvrdma::parse_bytes("64KiB") == 65536);
  CHECK(*kvrdma::parse_bytes("1m") == 1048576);
  CHECK(*kvrdma::parse_bytes("2GiB") == 2ull << 30);
}

TEST_CASE("parse_bytes rejects garbage and overflow", "[units]") {
  for (const char* bad : {"", "K", "12Q", "-1", "1.5M", "99999999999999999999G"}) {
    INFO(bad);
    auto r = kvrdma::parse_bytes(bad);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("parse_bool knows the usual spellings", "[units]") {
  CHECK(*kvrdma::parse_bool("true"));
  CHECK(*kvrdma::parse_bool("ON"));
  CHECK_FALSE(*kvrdma::parse_bool("0"));
  CHECK_FALSE(*kvrdma::parse_bool("no"));
  CHECK_FALSE(kvrdma::parse_bool("maybe").is_ok());
}

TEST_CASE("format_bytes picks a readable unit", "[units]") {
  CHECK(kvrdma::format_bytes(512) == "512 B");
  CHECK(kvrdma::format_bytes(64ull << 20) == "64.0 MiB");
}
