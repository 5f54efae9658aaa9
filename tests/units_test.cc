#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

#include "common/units.h"

using kvrdma::Code;

TEST_CASE("parse_bytes accepts plain numbers and binary suffixes", "[units]") {
  CHECK(*kvrdma::parse_bytes("4096") == 4096);
  CHECK(*kvrdma::parse_bytes("64K") == 65536);
  CHECK(*kvrdma::parse_bytes("64KiB") == 65536);
  CHECK(*kvrdma::parse_bytes("1m") == 1048576);
  CHECK(*kvrdma::parse_bytes("2GiB") == 2ull << 30);
}

TEST_CASE("parse_bytes accepts every suffix form in any case", "[units]") {
  struct Case {
    const char* text;
    uint64_t bytes;
  };
  for (const Case& c : {Case{"0", 0}, Case{"0K", 0}, Case{"0.0M", 0}, Case{"1", 1},
                        Case{"512B", 512}, Case{"512b", 512}, Case{"1k", 1024}, Case{"1KB", 1024},
                        Case{"1kib", 1024}, Case{"1KiB", 1024}, Case{"3M", 3ull << 20},
                        Case{"3MB", 3ull << 20}, Case{"3MiB", 3ull << 20}, Case{"2g", 2ull << 30},
                        Case{"2GB", 2ull << 30}, Case{"1T", 1ull << 40}, Case{"1TiB", 1ull << 40},
                        Case{"64 MiB", 64ull << 20}, Case{"007K", 7ull << 10}}) {
    INFO(c.text);
    auto r = kvrdma::parse_bytes(c.text);
    REQUIRE(r.is_ok());
    CHECK(*r == c.bytes);
  }
}

TEST_CASE("parse_bytes takes fractions and rounds to a whole byte", "[units]") {
  CHECK(*kvrdma::parse_bytes("1.5M") == 1572864);
  CHECK(*kvrdma::parse_bytes("1.5MiB") == 1572864);
  CHECK(*kvrdma::parse_bytes("0.5K") == 512);
  CHECK(*kvrdma::parse_bytes("1.25G") == 1342177280);
  CHECK(*kvrdma::parse_bytes("64.0 KiB") == 65536);
  // 0.1 KiB is 102.4 B: down; 0.3 KiB is 307.2 B: down; 0.0005 KiB is 0.512 B: up (half up).
  CHECK(*kvrdma::parse_bytes("0.1K") == 102);
  CHECK(*kvrdma::parse_bytes("0.3K") == 307);
  CHECK(*kvrdma::parse_bytes("0.0005K") == 1);
  CHECK(*kvrdma::parse_bytes("0.00048828125K") == 1);  // exactly half a byte: up
  CHECK(*kvrdma::parse_bytes("0.0004K") == 0);
  // More digits than 64 bits hold in the fraction still parse.
  CHECK(*kvrdma::parse_bytes("1.0000000000000000000000001M") == 1048576);
}

TEST_CASE("parse_bytes reaches 2^64-1 and no further", "[units]") {
  CHECK(*kvrdma::parse_bytes("18446744073709551615") == 18446744073709551615ull);
  CHECK(*kvrdma::parse_bytes("16777215T") == 16777215ull << 40);
  for (const char* big : {"18446744073709551616", "99999999999999999999G", "16777216T",
                          "16777215.9999999999999999T", "17179869184G"}) {
    INFO(big);
    auto r = kvrdma::parse_bytes(big);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK(r.status().message().find(std::string("'") + big + "'") != std::string::npos);
    CHECK(r.status().message().find("too large") != std::string::npos);
  }
}

TEST_CASE("parse_bytes rejects junk with an error naming the text", "[units]") {
  for (const char* bad :
       {"",     "K",      "12Q", "-1",   "+1",  " 1",  "1 ",    "1  K",   "1.",   ".5M", "1.5",
        "1.5B", "1.2.3M", "1e3", "0x10", "1KK", "1iB", "1Kib ", "1 KB B", "1,5M", "abc"}) {
    INFO("'" << bad << "'");
    auto r = kvrdma::parse_bytes(bad);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK(r.status().message().find(std::string("'") + bad + "' is not a size") !=
          std::string::npos);
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
  CHECK(kvrdma::format_bytes(0) == "0 B");
  CHECK(kvrdma::format_bytes(512) == "512 B");
  CHECK(kvrdma::format_bytes(1023) == "1023 B");
  CHECK(kvrdma::format_bytes(1024) == "1.0 KiB");
  CHECK(kvrdma::format_bytes(1536) == "1.5 KiB");
  CHECK(kvrdma::format_bytes(64ull << 20) == "64.0 MiB");
  CHECK(kvrdma::format_bytes((1ull << 20) - 1) == "1.0 MiB");  // never "1024.0 KiB"
  CHECK(kvrdma::format_bytes(3ull << 29) == "1.5 GiB");
  CHECK(kvrdma::format_bytes(1ull << 40) == "1.0 TiB");
  CHECK(kvrdma::format_bytes(UINT64_MAX) == "16777216.0 TiB");
}

TEST_CASE("format_bytes output parses back", "[units]") {
  for (uint64_t b :
       {uint64_t{0}, uint64_t{1000}, uint64_t{1536}, uint64_t{3} << 29, uint64_t{64} << 20}) {
    INFO(b);
    auto r = kvrdma::parse_bytes(kvrdma::format_bytes(b));
    REQUIRE(r.is_ok());
    CHECK(*r == b);
  }
}
