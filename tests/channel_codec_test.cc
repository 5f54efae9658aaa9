// The request channel's wire format: round trips byte for byte, and hostile input refused.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <string>

#include "channel/codec.h"

namespace ch = kvrdma::channel;
using kvrdma::Code;
using kvrdma::Status;

namespace {

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

constexpr size_t kSlot = 4096;

}  // namespace

TEST_CASE("channel codec: every request op round-trips", "[channel]") {
  ch::Request r;
  r.slot = 7;
  r.generation = 0x0123456789abcdefull;
  r.map_epoch = 42;
  r.timeout_ms = 1500;
  std::string value(1000, '\0');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 7);
  SECTION("PUT") {
    r.op = ch::Op::kPut;
    r.key = "key-1";
    r.value = value;
    r.ttl_ms = 9000;
  }
  SECTION("GET") {
    r.op = ch::Op::kGet;
    r.key = std::string_view("k\0ey", 4);
    r.dest_offset = 4096;
    r.dest_capacity = 1 << 20;
  }
  SECTION("DELETE") {
    r.op = ch::Op::kDelete;
    r.key = "gone";
  }
  SECTION("GET_MANY") {
    r.op = ch::Op::kGetMany;
    r.items = {{"a", 0, 0, 0}, {"bb", 0, 8192, 100}, {"", 0, 0, 0}, {"dddd", 0, 1, 2}};
  }
  std::string wire;
  REQUIRE(ch::encode(r, kSlot, &wire).is_ok());
  REQUIRE(wire.size() == ch::encoded_size(r));
  auto d = ch::decode_request(bytes_of(wire), kSlot, 64);
  REQUIRE(d.is_ok());
  CHECK(d->op == r.op);
  CHECK(d->slot == r.slot);
  CHECK(d->generation == r.generation);
  CHECK(d->key == r.key);
  CHECK(d->value == (r.op == ch::Op::kPut ? r.value : std::string_view()));
  CHECK(d->map_epoch == r.map_epoch);
  CHECK(d->ttl_ms == r.ttl_ms);
  CHECK(d->timeout_ms == r.timeout_ms);
  CHECK(d->dest_offset == r.dest_offset);
  CHECK(d->dest_capacity == r.dest_capacity);
  REQUIRE(d->items.size() == r.items.size());
  for (size_t i = 0; i < r.items.size(); ++i) {
    CHECK(d->items[i].key == r.items[i].key);
    CHECK(d->items[i].dest_offset == r.items[i].dest_offset);
    CHECK(d->items[i].dest_capacity == r.items[i].dest_capacity);
  }
  // Encoding again gives the same bytes.
  std::string again;
  REQUIRE(ch::encode(*d, kSlot, &again).is_ok());
  CHECK(again == wire);
}

TEST_CASE("channel codec: a response round-trips with results, message and detail", "[channel]") {
  ch::Response r;
  r.op = ch::Op::kGetMany;
  r.slot = 3;
  r.generation = 99;
  r.code = Code::kOk;
  r.message = "fine";
  r.detail = std::string_view("\x0a\x02\x08\x01", 4);
  r.results = {{Code::kOk, ch::kFlagInline, 5, "hello"},
               {Code::kNotFound, 0, 0, ""},
               {Code::kOk, ch::kFlagWritten, 100000, ""},
               {Code::kOk, ch::kFlagDeferred, 10, ""}};
  std::string wire;
  REQUIRE(ch::encode(r, kSlot, &wire).is_ok());
  auto d = ch::decode_response(bytes_of(wire), kSlot);
  REQUIRE(d.is_ok());
  CHECK(d->op == r.op);
  CHECK(d->slot == 3);
  CHECK(d->generation == 99);
  CHECK(d->message == "fine");
  CHECK(d->detail == r.detail);
  REQUIRE(d->results.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    CHECK(d->results[i].code == r.results[i].code);
    CHECK(d->results[i].flags == r.results[i].flags);
    CHECK(d->results[i].value_len == r.results[i].value_len);
    CHECK(d->results[i].inline_bytes == r.results[i].inline_bytes);
  }
}

TEST_CASE("channel codec: encoding more than a slot is refused", "[channel]") {
  ch::Request r;
  r.op = ch::Op::kPut;
  r.key = "k";
  std::string big(kSlot, 'x');
  r.value = big;
  std::string wire;
  Status s = ch::encode(r, kSlot, &wire);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK(s.message().find("exceeds the slot size") != std::string::npos);
}

TEST_CASE("channel codec: hostile requests are refused, never read past the input", "[channel]") {
  ch::Request r;
  r.op = ch::Op::kPut;
  r.slot = 1;
  r.generation = 5;
  r.key = "key";
  r.value = "value";
  std::string good;
  REQUIRE(ch::encode(r, kSlot, &good).is_ok());
  auto refuse = [](const std::string& w, size_t slot = kSlot) {
    auto d = ch::decode_request(bytes_of(w), slot, 64);
    REQUIRE_FALSE(d.is_ok());
    CHECK(d.status().code() == Code::kInvalidArgument);
  };
  auto patch32 = [](std::string w, size_t at, uint32_t v) {
    std::memcpy(w.data() + at, &v, 4);  // little-endian host
    return w;
  };
  SECTION("shorter than the header") { refuse(good.substr(0, ch::kRequestHeaderBytes - 1)); }
  SECTION("larger than the slot") { refuse(good, good.size() - 1); }
  SECTION("wrong magic") {
    std::string w = good;
    w[0] ^= 1;
    refuse(w);
  }
  SECTION("unknown op") {
    std::string w = good;
    w[3] = 9;
    refuse(w);
  }
  SECTION("key length beyond the body") { refuse(patch32(good, 16, 0xffffffff)); }
  SECTION("value length beyond the body") { refuse(patch32(good, 20, 1000)); }
  SECTION("lengths shorter than the body") { refuse(good + "trailing"); }
  SECTION("item count on a PUT") { refuse(patch32(good, 44, 1)); }
  SECTION("reserved field set") { refuse(patch32(good, 68, 1)); }
  SECTION("GET_MANY with too many items or lying lengths") {
    ch::Request m;
    m.op = ch::Op::kGetMany;
    m.items = {{"aa", 0, 0, 0}, {"bb", 0, 0, 0}};
    std::string w;
    REQUIRE(ch::encode(m, kSlot, &w).is_ok());
    REQUIRE(ch::decode_request(bytes_of(w), kSlot, 64).is_ok());
    refuse(patch32(w, 44, 1000000));                          // count
    refuse(patch32(w, 44, 0));                                // zero items
    refuse(patch32(w, ch::kRequestHeaderBytes, 0xfffffff0));  // first key runs past the keys
    refuse(patch32(w, ch::kRequestHeaderBytes, 1));           // lengths do not add up
    auto d = ch::decode_request(bytes_of(w), kSlot, 1);       // over the caller's max
    CHECK_FALSE(d.is_ok());
  }
}

TEST_CASE("channel codec: hostile responses are refused", "[channel]") {
  ch::Response r;
  r.op = ch::Op::kGet;
  r.results = {{Code::kOk, ch::kFlagInline, 3, "abc"}};
  std::string good;
  REQUIRE(ch::encode(r, kSlot, &good).is_ok());
  auto patch32 = [](std::string w, size_t at, uint32_t v) {
    std::memcpy(w.data() + at, &v, 4);
    return w;
  };
  auto refused = [](const std::string& w) {
    return !ch::decode_response(bytes_of(w), kSlot).is_ok();
  };
  CHECK(refused(good.substr(0, 10)));
  CHECK(refused(patch32(good, 16, 77)));                            // unknown code
  CHECK(refused(patch32(good, 24, 0x7fffffff)));                    // item count
  CHECK(refused(patch32(good, ch::kResponseHeaderBytes + 16, 4)));  // inline runs past
  CHECK(refused(patch32(good, ch::kResponseHeaderBytes + 8, 4)));   // inline != value_len
  CHECK(refused(good + "x"));
}

TEST_CASE("channel codec: random bytes never crash the decoders", "[channel]") {
  std::mt19937_64 rng(12345);
  ch::Request r;
  r.op = ch::Op::kGetMany;
  r.items = {{"a", 0, 0, 0}, {"bcd", 0, 5, 6}};
  std::string base;
  REQUIRE(ch::encode(r, kSlot, &base).is_ok());
  for (int round = 0; round < 20000; ++round) {
    std::string w = base;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) w[rng() % w.size()] = static_cast<char>(rng());
    if (rng() % 8 == 0) w.resize(rng() % (w.size() + 8));
    auto d = ch::decode_request(bytes_of(w), kSlot, 64);
    if (d.is_ok()) {
      // Whatever decoded lies inside the input.
      for (const auto& it : d->items) {
        CHECK(it.key.data() >= w.data());
        CHECK(it.key.data() + it.key.size() <= w.data() + w.size());
      }
    }
    (void)ch::decode_response(bytes_of(w), kSlot);
  }
}
