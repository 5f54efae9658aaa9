#include "memory/memory_pool.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "common/units.h"

namespace kvrdma::memory {
namespace {

constexpr uint64_t kMinClass = 64;
constexpr int kNumClasses = 6;             // 64 B .. 2 KiB; 2 KiB < len < 4 KiB takes a page
constexpr uint64_t kSlabBytes = 64 << 10;  // small classes are carved from 64 KiB slabs

static_assert((kMinClass << (kNumClasses - 1)) < kSmallLimit);
static_assert(kSlabBytes % kPageSize == 0);

// Rounds up to a multiple of `to`; 0 when that would overflow (callers treat 0 as "too big").
uint64_t round_up(uint64_t v, uint64_t to) {
  if (v > UINT64_MAX - (to - 1)) return 0;
  return (v + to - 1) / to * to;
}

// The size class for a small length, or -1 when it takes whole pages.
int class_of(uint64_t len) {
  for (int c = 0; c < kNumClasses; ++c) {
    if (len <= (kMinClass << c)) return c;
  }
  return -1;
}

}  // namespace

struct MemoryPool::State {
  // Free page extents, kept in two indexes that always hold the same set: by offset to find and
  // merge neighbours, by length for best fit.
  std::map<uint64_t, uint64_t> free_by_offset;       // offset -> length
  std::multimap<uint64_t, uint64_t> free_by_length;  // length -> offset

  // A slab of one size class. Slots are carved in address order (`carved` is the bump pointer);
  // given-back slots go on `free` and are reused first. An empty slab goes back to the page map at
  // once, so small values never pin memory that a large value could use.
  struct Slab {
    int cls = 0;
    uint32_t used = 0;
    uint32_t carved = 0;
    std::vector<uint32_t> free;  // slot indexes
  };
  std::map<uint64_t, Slab> slabs;           // slab offset -> slab
  std::set<uint64_t> partial[kNumClasses];  // offsets of slabs with a slot to give, per class

  uint64_t used = 0;
  uint64_t allocations = 0;

  void add_free(uint64_t off, uint64_t len) {
    free_by_offset.emplace(off, len);
    free_by_length.emplace(len, off);
  }
  void remove_free(std::map<uint64_t, uint64_t>::iterator it) {
    auto [b, e] = free_by_length.equal_range(it->second);
    for (auto j = b; j != e; ++j) {
      if (j->second == it->first) {
        free_by_length.erase(j);
        break;
      }
    }
    free_by_offset.erase(it);
  }
  // Best fit: the shortest free extent of at least `len`; false when none is long enough.
  bool take_pages(uint64_t len, uint64_t& off) {
    auto it = free_by_length.lower_bound(len);
    if (it == free_by_length.end()) return false;
    uint64_t flen = it->first;
    off = it->second;
    free_by_length.erase(it);
    free_by_offset.erase(off);
    if (flen > len) add_free(off + len, flen - len);
    return true;
  }
  // Returns an extent, merged with a free neighbour on either side.
  void give_pages(uint64_t off, uint64_t len) {
    auto next = free_by_offset.lower_bound(off);
    if (next != free_by_offset.end() && next->first == off + len) {
      len += next->second;
      remove_free(next);
    }
    auto prev = free_by_offset.lower_bound(off);
    if (prev != free_by_offset.begin()) {
      --prev;
      if (prev->first + prev->second == off) {
        off = prev->first;
        len += prev->second;
        remove_free(prev);
      }
    }
    add_free(off, len);
  }
  uint64_t largest_free() const {
    return free_by_length.empty() ? 0 : free_by_length.rbegin()->first;
  }

  // A slot of class `cls`, carving a new slab if needed; false when no slab can be had.
  bool take_slot(int cls, uint64_t& off) {
    const uint64_t slot = kMinClass << cls;
    const uint32_t slots_per_slab = static_cast<uint32_t>(kSlabBytes / slot);
    auto& part = partial[cls];
    if (part.empty()) {
      uint64_t start = 0;
      if (!take_pages(kSlabBytes, start)) return false;
      slabs.emplace(start, Slab{cls, 0, 0, {}});
      part.insert(start);
    }
    // The lowest-addressed partial slab: keeps small values packed so slabs empty out.
    uint64_t start = *part.begin();
    Slab& s = slabs.at(start);
    uint32_t idx;
    if (!s.free.empty()) {
      idx = s.free.back();
      s.free.pop_back();
    } else {
      idx = s.carved++;
    }
    if (++s.used == slots_per_slab) part.erase(start);
    off = start + idx * slot;
    return true;
  }
  void give_slot(uint64_t off) {
    auto it = std::prev(slabs.upper_bound(off));
    Slab& s = it->second;
    const uint64_t slot = kMinClass << s.cls;
    if (--s.used == 0) {
      partial[s.cls].erase(it->first);
      uint64_t start = it->first;
      slabs.erase(it);
      give_pages(start, kSlabBytes);
      return;
    }
    s.free.push_back(static_cast<uint32_t>((off - it->first) / slot));
    partial[s.cls].insert(it->first);
  }
};

std::byte* Allocation::data() const { return pool_ ? pool_->base() + offset_ : nullptr; }

Allocation::Allocation(Allocation&& other) noexcept
    : pool_(other.pool_), offset_(other.offset_), capacity_(other.capacity_) {
  other.pool_ = nullptr;
}

Allocation& Allocation::operator=(Allocation&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = other.pool_;
    offset_ = other.offset_;
    capacity_ = other.capacity_;
    other.pool_ = nullptr;
  }
  return *this;
}

void Allocation::reset() {
  if (pool_ != nullptr) {
    pool_->release(offset_, capacity_);
    pool_ = nullptr;
  }
}

MemoryPool::MemoryPool(std::byte* base, uint64_t size)
    : base_(base), size_(size / kPageSize * kPageSize), state_(std::make_unique<State>()) {
  if (size_ > 0) state_->add_free(0, size_);
}

MemoryPool::~MemoryPool() = default;

Result<Allocation> MemoryPool::allocate(uint64_t len) {
  std::lock_guard lock(mu_);
  return allocate_locked(len);
}

Result<Allocation> MemoryPool::allocate_locked(uint64_t len) {
  if (len == 0) return Status(Code::kInvalidArgument, "cannot allocate 0 bytes; ask for 1 or more");
  State& s = *state_;
  if (int cls = len < kSmallLimit ? class_of(len) : -1; cls >= 0) {
    uint64_t off = 0;
    if (s.take_slot(cls, off)) {
      s.used += kMinClass << cls;
      ++s.allocations;
      return Allocation(this, off, kMinClass << cls);
    }
    // No slab could be carved (no free 64 KiB extent): fall through to a page of its own.
  }
  uint64_t pages = round_up(len, kPageSize);
  uint64_t off = 0;
  if (pages == 0 || !s.take_pages(pages, off)) {
    return Status(Code::kResourceExhausted,
                  fmt::format("memory pool full: {} bytes asked, {} bytes free (largest free "
                              "extent {} bytes, pool {}); free values or raise "
                              "ServerOptions::memory_bytes / memory-mb",
                              len, size_ - s.used, s.largest_free(), format_bytes(size_)));
  }
  s.used += pages;
  ++s.allocations;
  return Allocation(this, off, pages);
}

Result<Allocation> MemoryPool::allocate_until(uint64_t len,
                                              std::chrono::steady_clock::time_point deadline) {
  uint64_t need = round_up(len, kPageSize);
  if (len > 0 && (need == 0 || need > size_)) {
    return Status(Code::kFailedPrecondition,
                  fmt::format("{} bytes can never fit in a pool of {} bytes (needs {} bytes); "
                              "raise ServerOptions::memory_bytes / memory-mb or split the value",
                              len, size_, need == 0 ? len : need));
  }
  std::unique_lock lock(mu_);
  for (;;) {
    auto a = allocate_locked(len);
    if (a.is_ok() || a.status().code() != Code::kResourceExhausted) return a;
    // Holding mu_ from the failed attempt to the wait means no release can slip in between.
    if (released_.wait_until(lock, deadline) == std::cv_status::timeout) {
      auto last = allocate_locked(len);
      if (last.is_ok()) return last;
      return Status(Code::kDeadlineExceeded,
                    fmt::format("no room for {} bytes became free before the deadline ({} bytes "
                                "free, largest free extent {} bytes)",
                                len, size_ - state_->used, state_->largest_free()));
    }
  }
}

void MemoryPool::release(uint64_t offset, uint64_t capacity) {
  {
    std::lock_guard lock(mu_);
    State& s = *state_;
    s.used -= capacity;
    --s.allocations;
    if (capacity < kSmallLimit) {
      s.give_slot(offset);
    } else {
      s.give_pages(offset, capacity);
    }
  }
  released_.notify_all();
}

PoolUsage MemoryPool::usage() const {
  std::lock_guard lock(mu_);
  PoolUsage u;
  u.total = size_;
  u.used = state_->used;
  u.free = size_ - state_->used;
  u.largest_free = state_->largest_free();
  u.allocations = state_->allocations;
  return u;
}

}  // namespace kvrdma::memory
