#include <catch2/catch.hpp>

#include <cstdlib>
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
  explicit Region(size_t n) : size(n), data(static_cast<std::byte*>(std::aligned_alloc(kPageSize, n))) {}
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
  auto waiter = std::async(std::launch::async, [&] { return pool.allocate_until(512 << 10, deadline); });
  // The waiter cannot succeed until the extent is released.
  CHECK(waiter.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
  all->reset();
  auto got = waiter.get();
  REQUIRE(got.is_ok());
  CHECK(got->capacity() >= 512 << 10);

  auto expired = pool.allocate_until(1 << 20, std::chrono::steady_clock::now() + std::chrono::milliseconds(20));
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
