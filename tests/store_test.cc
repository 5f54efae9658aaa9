#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "store/store.h"

using kvrdma::Code;
using kvrdma::ManualClock;
using kvrdma::memory::MemoryPool;
using kvrdma::store::Store;
using kvrdma::store::StoreOptions;
using namespace std::chrono_literals;

namespace {

struct PageMemory {
  explicit PageMemory(size_t n) : data(static_cast<std::byte*>(std::aligned_alloc(4096, n))) {}
  ~PageMemory() { std::free(data); }
  std::byte* data;
};

struct Fixture {
  explicit Fixture(size_t pool_bytes = 1 << 20, StoreOptions o = {})
      : mem(pool_bytes), pool(mem.data, pool_bytes), store(pool, clock, o) {}
  std::string read(std::string_view key) {
    auto r = store.get(key);
    if (!r) {
      std::string out = "<";
      out += kvrdma::code_name(r.status().code());
      out += '>';
      return out;
    }
    return std::string(reinterpret_cast<const char*>(r->data()), r->size());
  }
  PageMemory mem;  // destroyed last
  ManualClock clock;
  MemoryPool pool;
  Store store;
};

std::string value_of(size_t n, char c) { return std::string(n, c); }

}  // namespace

TEST_CASE("put then get returns the bytes", "[store]") {
  Fixture f;
  std::string v("a\0b\xff", 4);
  REQUIRE(f.store.put("k", v, 0ms).is_ok());
  CHECK(f.read("k") == v);
  CHECK(f.read("missing") == "<NOT_FOUND>");
  CHECK(f.store.stats().keys == 1);
  CHECK(f.store.stats().value_bytes == 4);
}

TEST_CASE("overwrite is atomic: a pinned old value stays whole", "[store]") {
  Fixture f;
  REQUIRE(f.store.put("k", value_of(10000, 'o'), 0ms).is_ok());
  auto old_ref = f.store.get("k");
  REQUIRE(old_ref.is_ok());
  REQUIRE(f.store.put("k", value_of(20000, 'n'), 0ms).is_ok());
  CHECK(std::string(reinterpret_cast<const char*>(old_ref->data()), old_ref->size()) ==
        value_of(10000, 'o'));
  CHECK(f.read("k") == value_of(20000, 'n'));
}

TEST_CASE("delete unlinks at once and frees memory when the last pin goes", "[store]") {
  Fixture f;
  REQUIRE(f.store.put("k", value_of(50000, 'x'), 0ms).is_ok());
  auto used_with_value = f.pool.usage().used;
  {
    auto ref = f.store.get("k");
    REQUIRE(ref.is_ok());
    CHECK(f.store.stats().pinned == 1);
    CHECK(f.store.erase("k"));
    CHECK(f.read("k") == "<NOT_FOUND>");
    CHECK(f.pool.usage().used == used_with_value);  // still pinned
    CHECK(ref->data()[49999] == std::byte{'x'});
  }
  CHECK(f.pool.usage().used == 0);
  CHECK_FALSE(f.store.erase("k"));
}

TEST_CASE("an expired key is never returned and the sweep reclaims it", "[store]") {
  Fixture f;
  REQUIRE(f.store.put("short", value_of(5000, 's'), 100ms).is_ok());
  REQUIRE(f.store.put("forever", value_of(5000, 'f'), 0ms).is_ok());
  f.clock.advance(99ms);
  CHECK(f.read("short") == value_of(5000, 's'));
  f.clock.advance(1ms);
  CHECK(f.store.sweep_expired() == 1);
  CHECK(f.read("short") == "<NOT_FOUND>");
  CHECK(f.read("forever") == value_of(5000, 'f'));
  CHECK(f.store.stats().expirations == 1);
  CHECK(f.pool.usage().used == 8192);  // only "forever" remains (two pages each)
}

TEST_CASE("an expired key read before the sweep is NOT_FOUND", "[store]") {
  Fixture f;
  REQUIRE(f.store.put("k", "v", 10ms).is_ok());
  f.clock.advance(10ms);
  CHECK(f.read("k") == "<NOT_FOUND>");
  CHECK(f.store.stats().keys == 0);
}

TEST_CASE("a TTL is never cut short by the clock's sub-millisecond phase", "[store]") {
  using std::chrono::microseconds;
  Fixture f;
  f.clock.advance(microseconds(500));  // the put lands half-way through a millisecond
  REQUIRE(f.store.put("k", "v", 10ms).is_ok());
  f.clock.advance(microseconds(9600));  // 9.6 ms later: still inside its TTL
  CHECK(f.read("k") == "v");
  CHECK(f.store.sweep_expired() == 0);
  f.clock.advance(microseconds(1400));  // 11 ms after the put: gone, at most 1 ms late
  CHECK(f.read("k") == "<NOT_FOUND>");
}

TEST_CASE("eviction takes the least recently used unpinned entry", "[store]") {
  Fixture f(256 << 10);  // room for four 64 KiB values
  for (const char* k : {"a", "b", "c", "d"})
    REQUIRE(f.store.put(k, value_of(65536, *k), 0ms).is_ok());
  CHECK(f.read("a") == value_of(65536, 'a'));  // a is now most recent; b is the LRU
  REQUIRE(f.store.put("e", value_of(65536, 'e'), 0ms).is_ok());
  CHECK(f.read("b") == "<NOT_FOUND>");
  CHECK(f.read("a") == value_of(65536, 'a'));
  CHECK(f.store.stats().evictions == 1);

  // Pin c (now the LRU): eviction skips it and takes d.
  auto pin = f.store.get("c");
  REQUIRE(pin.is_ok());
  f.read("a");
  f.read("e");
  REQUIRE(f.store.put("f", value_of(65536, 'f'), 0ms).is_ok());
  CHECK(f.read("d") == "<NOT_FOUND>");
  CHECK(std::string(reinterpret_cast<const char*>(pin->data()), 3) == "ccc");
}

TEST_CASE("with eviction off a full pool refuses and keeps every value", "[store]") {
  StoreOptions o;
  o.evict = false;
  Fixture f(128 << 10, o);
  REQUIRE(f.store.put("a", value_of(65536, 'a'), 0ms).is_ok());
  REQUIRE(f.store.put("b", value_of(65536, 'b'), 0ms).is_ok());
  auto s = f.store.put("c", value_of(65536, 'c'), 0ms);
  CHECK(s.code() == Code::kResourceExhausted);
  CHECK(s.message().find("ServerOptions::eviction / eviction") != std::string::npos);
  CHECK(f.read("a") == value_of(65536, 'a'));
  CHECK(f.read("b") == value_of(65536, 'b'));
}

TEST_CASE("limits on keys and values are INVALID_ARGUMENT", "[store]") {
  StoreOptions o;
  o.max_key_bytes = 16;
  o.max_value_bytes = 1000;
  Fixture f(1 << 20, o);
  CHECK(f.store.put("", "v", 0ms).code() == Code::kInvalidArgument);
  CHECK(f.store.put(std::string(17, 'k'), "v", 0ms).code() == Code::kInvalidArgument);
  auto s = f.store.put("k", value_of(1001, 'v'), 0ms);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK(s.message().find("1001") != std::string::npos);
  CHECK(f.store.stats().keys == 0);
}

TEST_CASE("concurrent readers always see a whole value", "[store]") {
  Fixture f(8 << 20);
  REQUIRE(f.store.put("k", value_of(8192, 'a'), 0ms).is_ok());
  std::atomic<int> torn{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        if (t == 0) {
          (void)f.store.put("k", value_of(8192 + (i % 7) * 100, static_cast<char>('a' + i % 26)),
                            0ms);
          continue;
        }
        auto r = f.store.get("k");
        if (!r) continue;
        auto* p = reinterpret_cast<const char*>(r->data());
        for (uint64_t j = 1; j < r->size(); ++j) {
          if (p[j] != p[0]) {
            ++torn;
            break;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(torn == 0);
}

TEST_CASE("a moved-over ValueRef unpins what it held", "[store]") {
  Fixture f(128 << 10);
  REQUIRE(f.store.put("a", value_of(65536, 'a'), 0ms).is_ok());
  REQUIRE(f.store.put("b", value_of(65536, 'b'), 0ms).is_ok());
  auto ref = f.store.get("a");
  REQUIRE(ref.is_ok());
  kvrdma::store::ValueRef held = std::move(*ref);
  CHECK(f.store.stats().pinned == 1);
  auto other = f.store.get("b");
  REQUIRE(other.is_ok());
  held = std::move(*other);  // "a" is unpinned now, "b" pinned
  CHECK(f.store.stats().pinned == 1);
  // "a" is the LRU and no longer pinned, so it is the one evicted.
  REQUIRE(f.store.put("c", value_of(65536, 'c'), 0ms).is_ok());
  CHECK(f.read("a") == "<NOT_FOUND>");
  CHECK(std::string(reinterpret_cast<const char*>(held.data()), 2) == "bb");
}

TEST_CASE("when every value is pinned, eviction refuses rather than free one", "[store]") {
  Fixture f(128 << 10);
  REQUIRE(f.store.put("a", value_of(65536, 'a'), 0ms).is_ok());
  REQUIRE(f.store.put("b", value_of(65536, 'b'), 0ms).is_ok());
  auto pa = f.store.get("a");
  auto pb = f.store.get("b");
  REQUIRE((pa.is_ok() && pb.is_ok()));
  auto s = f.store.put("c", value_of(65536, 'c'), 0ms);
  CHECK(s.code() == Code::kResourceExhausted);
  CHECK(s.message().find("pinned") != std::string::npos);
  CHECK(f.store.stats().evictions == 0);
  CHECK(f.store.stats().pinned == 2);
  CHECK(f.read("a") == value_of(65536, 'a'));
  CHECK(f.read("b") == value_of(65536, 'b'));
}

TEST_CASE("eviction of small values frees their slab for a large one", "[store]") {
  Fixture f(128 << 10);
  for (int i = 0; i < 100; ++i) REQUIRE(f.store.put("s" + std::to_string(i), "tiny", 0ms).is_ok());
  REQUIRE(f.store.put("big", value_of(100000, 'B'), 0ms).is_ok());
  CHECK(f.read("big") == value_of(100000, 'B'));
  CHECK(f.store.stats().evictions == 100);
  CHECK(f.store.stats().keys == 1);
}

TEST_CASE("the full-pool message gives the figures and the remedy", "[store]") {
  StoreOptions o;
  o.evict = false;
  Fixture f(64 << 10, o);
  REQUIRE(f.store.put("a", value_of(40000, 'a'), 0ms).is_ok());
  auto s = f.store.put("b", value_of(40000, 'b'), 0ms);
  CHECK(s.code() == Code::kResourceExhausted);
  CHECK(s.message().find("40000 bytes asked") != std::string::npos);
  CHECK(s.message().find("ServerOptions::memory_bytes / memory-mb") != std::string::npos);
  CHECK(f.store.stats().keys == 1);
}

TEST_CASE("a value larger than the pool is INVALID_ARGUMENT naming both sizes", "[store]") {
  Fixture f(64 << 10);
  auto s = f.store.put("k", value_of(70000, 'v'), 0ms);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK(s.message().find("70000") != std::string::npos);
  CHECK(s.message().find("65536") != std::string::npos);
  CHECK(f.store.check("k", 65536).is_ok());
}

TEST_CASE("expiry: sweep reclaims every expired value, overwrite resets the TTL", "[store]") {
  Fixture f;
  for (int i = 0; i < 600; ++i) {  // more than one sweep batch
    REQUIRE(f.store.put("t" + std::to_string(i), value_of(100, 't'), 50ms).is_ok());
  }
  REQUIRE(f.store.put("renewed", "old", 50ms).is_ok());
  REQUIRE(f.store.put("renewed", "new", 0ms).is_ok());  // no TTL any more
  f.clock.advance(50ms);
  CHECK_FALSE(f.store.erase("t0"));  // expired: counted as such, not as a delete
  CHECK(f.read("t1") == "<NOT_FOUND>");
  CHECK(f.store.sweep_expired() == 598);
  CHECK(f.store.sweep_expired() == 0);
  CHECK(f.store.stats().expirations == 600);
  CHECK(f.store.stats().keys == 1);
  CHECK(f.read("renewed") == "new");
  CHECK(f.pool.usage().allocations == 1);
}

TEST_CASE("reserve then commit publishes, an uncommitted reservation returns its memory",
          "[store]") {
  Fixture f;
  {
    auto a = f.store.reserve(10000);
    REQUIRE(a.is_ok());
    CHECK(f.pool.usage().allocations == 1);
  }
  CHECK(f.pool.usage().allocations == 0);
  auto a = f.store.reserve(5);
  REQUIRE(a.is_ok());
  std::memcpy(a->data(), "hello", 5);
  REQUIRE(f.store.commit("k", std::move(*a), 5, 0ms).is_ok());
  CHECK(f.read("k") == "hello");
  REQUIRE(f.store.put("empty", "", 0ms).is_ok());
  CHECK(f.read("empty").empty());
}

TEST_CASE("concurrent writers and readers on several keys see whole values", "[store]") {
  Fixture f(2 << 20);  // small enough that eviction runs too
  constexpr int kKeys = 8;
  std::atomic<int> torn{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 3000; ++i) {
        std::string key = "k" + std::to_string(rng() % kKeys);
        if (rng() % 3 == 0) {
          // The length encodes the fill byte, so a reader can tell a whole value.
          char c = static_cast<char>('a' + rng() % 26);
          (void)f.store.put(key, value_of(1000 + (c - 'a') * 3001, c), 0ms);
          continue;
        }
        auto r = f.store.get(key);
        if (!r) continue;
        auto* p = reinterpret_cast<const char*>(r->data());
        if (r->size() != 1000 + static_cast<uint64_t>(p[0] - 'a') * 3001) {
          ++torn;
          continue;
        }
        for (uint64_t j = 1; j < r->size(); j += 7) {
          if (p[j] != p[0]) {
            ++torn;
            break;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(torn == 0);
  CHECK(f.store.stats().pinned == 0);
  CHECK(f.store.stats().keys <= kKeys);
}

TEST_CASE("the index grows past its first buckets and keeps every key, LRU order and TTL",
          "[store]") {
  Fixture f(8 << 20);
  constexpr int kKeys = 5000;  // several doublings of the bucket array
  for (int i = 0; i < kKeys; ++i) {
    auto ttl = i % 10 == 0 ? 100ms : 0ms;  // every tenth key expires
    REQUIRE(f.store.put("key-" + std::to_string(i), std::to_string(i * 7), ttl).is_ok());
  }
  CHECK(f.store.stats().keys == kKeys);
  for (int i = 0; i < kKeys; i += 3) {
    REQUIRE(f.read("key-" + std::to_string(i)) == std::to_string(i * 7));
  }
  for (int i = 1; i < kKeys; i += 2) REQUIRE(f.store.erase("key-" + std::to_string(i)));
  CHECK_FALSE(f.store.erase("key-1"));  // erased already
  CHECK(f.store.stats().keys == kKeys / 2);
  f.clock.advance(99ms);
  CHECK(f.store.sweep_expired() == 0);  // not one millisecond early
  f.clock.advance(1ms);
  CHECK(f.store.sweep_expired() == kKeys / 10);
  for (int i = 0; i < kKeys; i += 2) {
    std::string want = i % 10 == 0 ? "<NOT_FOUND>" : std::to_string(i * 7);
    REQUIRE(f.read("key-" + std::to_string(i)) == want);
  }
  CHECK(f.store.stats().keys == kKeys / 2 - kKeys / 10);
  CHECK(f.pool.usage().allocations == f.store.stats().keys);
}

TEST_CASE("keys that differ only in their tail or length are distinct", "[store]") {
  Fixture f;
  const std::string long_key(4096, 'x');
  std::string other = long_key;
  other.back() = 'y';
  REQUIRE(f.store.put(long_key, "a", 0ms).is_ok());
  REQUIRE(f.store.put(other, "b", 0ms).is_ok());
  REQUIRE(f.store.put(long_key.substr(0, 4095), "c", 0ms).is_ok());
  REQUIRE(f.store.put(std::string("k\0z", 3), "d", 0ms).is_ok());
  REQUIRE(f.store.put("k", "e", 0ms).is_ok());
  CHECK(f.read(long_key) == "a");
  CHECK(f.read(other) == "b");
  CHECK(f.read(long_key.substr(0, 4095)) == "c");
  CHECK(f.read(std::string("k\0z", 3)) == "d");
  CHECK(f.read("k") == "e");
  CHECK(f.store.stats().keys == 5);
}

TEST_CASE("a TTL too long to represent is kept as the longest one, not as none", "[store]") {
  Fixture f;
  REQUIRE(f.store.put("k", "v", std::chrono::milliseconds(INT64_MAX)).is_ok());
  f.clock.advance(std::chrono::hours(24 * 365 * 100));
  CHECK(f.read("k") == "v");
  CHECK(f.store.sweep_expired() == 0);
}

TEST_CASE("keys_where lists the live keys the predicate accepts", "[store]") {
  Fixture f;
  REQUIRE(f.store.put("a1", "x", 0ms).is_ok());
  REQUIRE(f.store.put("a2", "y", 0ms).is_ok());
  REQUIRE(f.store.put("b1", "z", 0ms).is_ok());
  REQUIRE(f.store.put("a3", "w", 5ms).is_ok());
  f.clock.advance(6ms);  // a3 expired, not yet swept: not listed
  auto keys = f.store.keys_where([](std::string_view k) { return k.substr(0, 1) == "a"; });
  std::sort(keys.begin(), keys.end());
  CHECK(keys == std::vector<std::string>{"a1", "a2"});
  CHECK(f.store.keys_where([](std::string_view) { return false; }).empty());
}

TEST_CASE("ttl_left counts down from the TTL and is none without one", "[store]") {
  Fixture f;
  REQUIRE(f.store.put("t", "v", 1000ms).is_ok());
  REQUIRE(f.store.put("n", "v", 0ms).is_ok());
  f.clock.advance(400ms);
  auto t = f.store.get("t");
  REQUIRE(t.is_ok());
  auto left = f.store.ttl_left(*t);
  REQUIRE(left.has_value());
  CHECK(left->count() >= 599);
  CHECK(left->count() <= 601);
  auto n = f.store.get("n");
  REQUIRE(n.is_ok());
  CHECK_FALSE(f.store.ttl_left(*n).has_value());
  f.clock.advance(600ms + 500us);  // expired while pinned: the shortest TTL, never none
  auto last = f.store.ttl_left(*t);
  REQUIRE(last.has_value());
  CHECK(last->count() == 1);
}

TEST_CASE("erase_if_same erases only the entry that was pinned", "[store]") {
  Fixture f;
  REQUIRE(f.store.put("k", "old", 0ms).is_ok());
  {
    auto ref = f.store.get("k");
    REQUIRE(ref.is_ok());
    REQUIRE(f.store.put("k", "new", 0ms).is_ok());  // overwritten meanwhile: kept
    CHECK_FALSE(f.store.erase_if_same("k", *ref));
    CHECK(f.read("k") == "new");
    CHECK(std::string(reinterpret_cast<const char*>(ref->data()), ref->size()) == "old");
  }
  {
    auto ref = f.store.get("k");
    REQUIRE(ref.is_ok());
    CHECK(f.store.erase_if_same("k", *ref));
    CHECK(f.read("k") == "<NOT_FOUND>");
    CHECK_FALSE(f.store.erase_if_same("k", *ref));  // already gone
  }
  CHECK(f.store.stats().keys == 0);
  CHECK(f.store.stats().value_bytes == 0);
}
