#include "memory/memory_pool.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "common/units.h"

namespace kvrdma::memory {
namespace {

constexpr uint64_t kMinClass = 64;
constexpr int kNumClasses = 6;               // 64 B .. 2 KiB; 2 KiB < len < 4 KiB takes a page
constexpr uint64_t kSlabBytes = 64 << 10;    // small classes are carved from 64 KiB slabs

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

int class_of(uint64_t len) {
  for (int c = 0; c < kNumClasses; ++c) {
    if (len <= (kMinClass << c)) return c;
  }
  return -1;
}

}  // namespace

struct MemoryPool::State {
  std::map<uint64_t, uint64_t> free_by_offset;     // offset -> length, page-granular
  std::multimap<uint64_t, uint64_t> free_by_length;  // length -> offset (best fit)
  struct Slab {
    int cls;
    uint32_t used;
  };
  std::map<uint64_t, Slab> slabs;                   // slab offset -> slab
  std::set<uint64_t> free_slots[kNumClasses];       // free slot offsets per class
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
  // Best-fit page extent; returns false when none fits.
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
  if (len == 0) return Status(Code::kInvalidArgument, "cannot allocate 0 bytes");
  std::lock_guard lock(mu_);
  State& s = *state_;
  int cls = len < kSmallLimit ? class_of(len) : -1;
  if (cls >= 0) {
    uint64_t slot_size = kMinClass << cls;
    if (s.free_slots[cls].empty()) {
      uint64_t slab = 0;
      if (s.take_pages(kSlabBytes, slab)) {
        s.slabs.emplace(slab, State::Slab{cls, 0});
        for (uint64_t o = slab; o < slab + kSlabBytes; o += slot_size) s.free_slots[cls].insert(o);
      }
    }
    if (!s.free_slots[cls].empty()) {
      uint64_t off = *s.free_slots[cls].begin();
      s.free_slots[cls].erase(s.free_slots[cls].begin());
      auto slab = std::prev(s.slabs.upper_bound(off));
      ++slab->second.used;
      s.used += slot_size;
      ++s.allocations;
      return Allocation(this, off, slot_size);
    }
    // No slab could be carved: fall through to a page of its own.
  }
  uint64_t pages = round_up(len, kPageSize);
  if (pages < len) return Status(Code::kInvalidArgument, fmt::format("size {} overflows", len));
  uint64_t off = 0;
  if (!s.take_pages(pages, off)) {
    return Status(Code::kResourceExhausted,
                  fmt::format("memory pool full: {} asked, {} free, largest free extent {}",
                              format_bytes(len), format_bytes(size_ - s.used),
                              format_bytes(s.largest_free())));
  }
  s.used += pages;
  ++s.allocations;
  return Allocation(this, off, pages);
}

Result<Allocation> MemoryPool::allocate_until(uint64_t len,
                                              std::chrono::steady_clock::time_point deadline) {
  if (round_up(len, kPageSize) > size_) {
    return Status(Code::kFailedPrecondition,
                  fmt::format("{} bytes can never fit in a pool of {} bytes; it needs at least {}",
                              len, size_, round_up(len, kPageSize)));
  }
  for (;;) {
    auto a = allocate(len);
    if (a.is_ok() || a.status().code() != Code::kResourceExhausted) return a;
    std::unique_lock lock(mu_);
    // Re-check under the lock so a release between allocate() and wait is not missed.
    uint64_t need = len < kSmallLimit ? std::min<uint64_t>(kSlabBytes, round_up(len, kPageSize))
                                      : round_up(len, kPageSize);
    bool fits = state_->largest_free() >= need;
    if (!fits && released_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return Status(Code::kDeadlineExceeded,
                    fmt::format("no {} of free space became available in time ({} free now)",
                                format_bytes(len), format_bytes(size_ - state_->used)));
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
      auto slab = std::prev(s.slabs.upper_bound(offset));
      int cls = slab->second.cls;
      s.free_slots[cls].insert(offset);
      if (--slab->second.used == 0) {
        uint64_t start = slab->first;
        auto& slots = s.free_slots[cls];
        slots.erase(slots.lower_bound(start), slots.lower_bound(start + kSlabBytes));
        s.slabs.erase(slab);
        s.give_pages(start, kSlabBytes);
      }
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
