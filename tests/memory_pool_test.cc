#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <future>
#include <map>
#include <random>
#include <vector>

#include "memory/memory_pool.h"

using kvrdma::Code;
using kvrdma::memory::Allocation;
using kvrdma::memory::kPageSize;
using kvrdma::memory::MemoryPool;

namespace {

struct Region {
  explicit Region(size_t n)
      : size(n), data(static_cast<std::byte*>(std::aligned_alloc(kPageSize, n))) {}
  ~Region() { std::free(data); }
  size_t size;
  std::byte* data;
};

}  // namespace

TEST_CASE("large values get page-aligned extents", "[pool]") {
  Region r(16 << 20);
  MemoryPool pool(r.data, r.size);
  for (uint64_t len : {4096ull, 4097ull, 100000ull, 1ull << 20}) {
    auto a = pool.allocate(len);
    REQUIRE(a.is_ok());
    CHECK(a->offset() % kPageSize == 0);
    CHECK(a->capacity() >= len);
    CHECK(a->capacity() % kPageSize == 0);
    CHECK(a->data() == r.data + a->offset());
  }
}

TEST_CASE("small values share size-class slabs", "[pool]") {
  Region r(1 << 20);
  MemoryPool pool(r.data, r.size);
  auto a = pool.allocate(100);
  auto b = pool.allocate(100);
  REQUIRE(a.is_ok());
  REQUIRE(b.is_ok());
  CHECK(a->capacity() == 128);
  CHECK(b->capacity() == 128);
  CHECK(a->offset() != b->offset());
  CHECK(pool.usage().used == 256);
  CHECK(pool.usage().allocations == 2);
}

TEST_CASE("freeing everything coalesces the pool back to one extent", "[pool]") {
  Region r(8 << 20);
  MemoryPool pool(r.data, r.size);
  {
    std::vector<Allocation> held;
    for (int i = 0; i < 200; ++i) {
      auto a = pool.allocate(i % 3 == 0 ? 64 : (i % 3 == 1 ? 5000 : 20000));
      REQUIRE(a.is_ok());
      held.push_back(std::move(*a));
    }
    CHECK(pool.usage().largest_free < pool.size());
    // Free every other one first to force coalescing both ways.
    for (size_t i = 0; i < held.size(); i += 2) held[i].reset();
  }
  auto u = pool.usage();
  CHECK(u.used == 0);
  CHECK(u.allocations == 0);
  CHECK(u.largest_free == pool.size());
}

TEST_CASE("a full pool answers RESOURCE_EXHAUSTED with the figures", "[pool]") {
  Region r(1 << 20);
  MemoryPool pool(r.data, r.size);
  auto all = pool.allocate(1 << 20);
  REQUIRE(all.is_ok());
  auto more = pool.allocate(4096);
  REQUIRE_FALSE(more.is_ok());
  CHECK(more.status().code() == Code::kResourceExhausted);
  CHECK(more.status().message().find("free") != std::string::npos);
  CHECK(pool.allocate(0).status().code() == Code::kInvalidArgument);
}

TEST_CASE("allocate_until waits for a release and fails for impossible sizes", "[pool]") {
  Region r(1 << 20);
  MemoryPool pool(r.data, r.size);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto too_big = pool.allocate_until(2 << 20, deadline);
  CHECK(too_big.status().code() == Code::kFailedPrecondition);
  CHECK(too_big.status().message().find(std::to_string(2 << 20)) != std::string::npos);

  auto all = pool.allocate(1 << 20);
  REQUIRE(all.is_ok());
  auto waiter =
      std::async(std::launch::async, [&] { return pool.allocate_until(512 << 10, deadline); });
  // The waiter cannot succeed until the extent is released.
  CHECK(waiter.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
  all->reset();
  REQUIRE(waiter.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  auto got = waiter.get();
  REQUIRE(got.is_ok());
  CHECK(got->capacity() >= 512 << 10);

  auto expired = pool.allocate_until(1 << 20, std::chrono::steady_clock::now() +
                                                  std::chrono::milliseconds(20));
  CHECK(expired.status().code() == Code::kDeadlineExceeded);
}

TEST_CASE("random allocations never overlap", "[pool]") {
  Region r(4 << 20);
  MemoryPool pool(r.data, r.size);
  std::mt19937 rng(42);
  std::map<uint64_t, Allocation> live;  // offset -> allocation
  for (int step = 0; step < 5000; ++step) {
    if (!live.empty() && (rng() % 3 == 0)) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      live.erase(it);
      continue;
    }
    uint64_t len = 1 + rng() % (rng() % 2 ? 3000 : 70000);
    auto a = pool.allocate(len);
    if (!a.is_ok()) continue;
    uint64_t off = a->offset();
    auto next = live.lower_bound(off);
    if (next != live.end()) REQUIRE(off + a->capacity() <= next->first);
    if (next != live.begin()) {
      auto prev = std::prev(next);
      REQUIRE(prev->first + prev->second.capacity() <= off);
    }
    REQUIRE(off + a->capacity() <= pool.size());
    live.emplace(off, std::move(*a));
  }
  live.clear();
  CHECK(pool.usage().largest_free == pool.size());
}

TEST_CASE("size classes are powers of two from 64 B, 2 KiB..4 KiB takes a page", "[pool]") {
  Region r(1 << 20);
  MemoryPool pool(r.data, r.size);
  const std::pair<uint64_t, uint64_t> cases[] = {{1, 64},      {64, 64},     {65, 128},
                                                 {200, 256},   {512, 512},   {513, 1024},
                                                 {2048, 2048}, {2049, 4096}, {4095, 4096}};
  for (auto [len, cap] : cases) {
    auto a = pool.allocate(len);
    REQUIRE(a.is_ok());
    CHECK(a->capacity() == cap);
    CHECK(a->offset() % cap == 0);  // slots are aligned to their class
  }
  CHECK(pool.usage().used == 0);
}

TEST_CASE("an empty slab goes back to the page map", "[pool]") {
  Region r(256 << 10);  // four 64 KiB slabs' worth
  MemoryPool pool(r.data, r.size);
  std::vector<Allocation> small;
  for (int i = 0; i < 1024; ++i) {  // exactly one slab of 64 B slots
    auto a = pool.allocate(64);
    REQUIRE(a.is_ok());
    small.push_back(std::move(*a));
  }
  CHECK(pool.usage().largest_free == (192u << 10));
  // One more slot needs a second slab.
  auto extra = pool.allocate(64);
  REQUIRE(extra.is_ok());
  CHECK(pool.usage().largest_free == (128u << 10));
  small.clear();
  extra->reset();
  auto u = pool.usage();
  CHECK(u.used == 0);
  CHECK(u.largest_free == pool.size());
  // With every page in use, the whole pool is one large extent again.
  auto all = pool.allocate(pool.size());
  CHECK(all.is_ok());
}

TEST_CASE("a small value takes a page of its own when no slab can be carved", "[pool]") {
  Region r(32 << 10);  // smaller than a slab
  MemoryPool pool(r.data, r.size);
  auto a = pool.allocate(100);
  REQUIRE(a.is_ok());
  CHECK(a->capacity() == kPageSize);
  a->reset();
  CHECK(pool.usage().largest_free == pool.size());
}

TEST_CASE("allocate_until is bounded by its deadline and ignores releases too small", "[pool]") {
  Region r(64 << 10);
  MemoryPool pool(r.data, r.size);
  auto half = pool.allocate(32 << 10);
  auto rest1 = pool.allocate(16 << 10);
  auto rest2 = pool.allocate(16 << 10);
  REQUIRE((half.is_ok() && rest1.is_ok() && rest2.is_ok()));
  auto start = std::chrono::steady_clock::now();
  auto waiter = std::async(std::launch::async, [&] {
    return pool.allocate_until(48 << 10, start + std::chrono::milliseconds(300));
  });
  rest1->reset();  // 16 KiB free: wakes the waiter, which must keep waiting
  REQUIRE(waiter.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  auto got = waiter.get();
  CHECK(got.status().code() == Code::kDeadlineExceeded);
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(300));
  CHECK(pool.allocate_until(0, start).status().code() == Code::kInvalidArgument);
  CHECK(pool.allocate_until(UINT64_MAX, start).status().code() == Code::kFailedPrecondition);
}

TEST_CASE("stress: live extents hold their own bytes", "[pool]") {
  Region r(2 << 20);
  MemoryPool pool(r.data, r.size);
  std::mt19937 rng(7);
  struct Live {
    Allocation a;
    uint64_t len;
    std::byte tag;
  };
  std::vector<Live> live;
  int failures = 0;
  for (int step = 0; step < 20000; ++step) {
    if (!live.empty() && rng() % 2 == 0) {
      size_t i = rng() % live.size();
      for (uint64_t j = 0; j < live[i].len; j += 61) REQUIRE(live[i].a.data()[j] == live[i].tag);
      live[i] = std::move(live.back());
      live.pop_back();
      continue;
    }
    uint64_t len = 1 + rng() % (rng() % 4 == 0 ? 100000 : 4000);
    auto a = pool.allocate(len);
    if (!a.is_ok()) {
      REQUIRE(a.status().code() == Code::kResourceExhausted);
      ++failures;
      continue;
    }
    auto tag = static_cast<std::byte>(step);
    std::memset(a->data(), static_cast<int>(tag), len);
    live.push_back(Live{std::move(*a), len, tag});
  }
  for (auto& l : live) {
    for (uint64_t j = 0; j < l.len; j += 61) REQUIRE(l.a.data()[j] == l.tag);
  }
  CHECK(pool.usage().allocations == live.size());
  live.clear();
  CHECK(pool.usage().largest_free == pool.size());
  CHECK(pool.usage().used == 0);
}
