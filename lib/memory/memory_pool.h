// MemoryPool: an allocator of extents inside one registered, page-aligned region it does not own.
// Values below kSmallLimit get size classes (powers of two from 64 B, carved from page slabs);
// larger ones get page-aligned extents from a best-fit free map that coalesces on free.
// Thread-safe: one mutex guards the free structures.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "kvrdma/status.h"

namespace kvrdma::memory {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kSmallLimit = 4096;  // values of this size or more are page-aligned

class MemoryPool;

// A move-only handle on an extent; gives it back to its pool when destroyed or reset().
// The pool must outlive it.
class Allocation {
 public:
  Allocation() = default;
  Allocation(Allocation&& other) noexcept;
  Allocation& operator=(Allocation&& other) noexcept;
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;
  ~Allocation() { reset(); }

  bool valid() const { return pool_ != nullptr; }
  uint64_t offset() const { return offset_; }      // from the region's base
  uint64_t capacity() const { return capacity_; }  // >= the length asked for
  std::byte* data() const;
  void reset();
  // Stops owning the extent without giving it back: for an owner that keeps (offset, capacity)
  // more compactly and returns it later with MemoryPool::adopt(). Read both first.
  void detach() { pool_ = nullptr; }

 private:
  friend class MemoryPool;
  Allocation(MemoryPool* pool, uint64_t offset, uint64_t capacity)
      : pool_(pool), offset_(offset), capacity_(capacity) {}
  MemoryPool* pool_ = nullptr;
  uint64_t offset_ = 0;
  uint64_t capacity_ = 0;
};

struct PoolUsage {
  uint64_t total = 0;
  uint64_t used = 0;  // bytes handed out, rounded to classes and pages
  uint64_t free = 0;
  uint64_t largest_free = 0;  // largest extent allocate() could return now
  uint64_t allocations = 0;   // live Allocations
};

class MemoryPool {
 public:
  // Manages [base, base + size); base must be page-aligned, size is rounded down to pages.
  MemoryPool(std::byte* base, uint64_t size);
  ~MemoryPool();
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  // An extent of at least `len` bytes (len > 0). RESOURCE_EXHAUSTED, saying how much was asked
  // and how much is free, when no extent fits now.
  Result<Allocation> allocate(uint64_t len);
  // Like allocate(), but waits for space until `deadline`. A request larger than the whole pool
  // fails at once with FAILED_PRECONDITION naming the size needed; one still not satisfiable at
  // the deadline fails with DEADLINE_EXCEEDED.
  Result<Allocation> allocate_until(uint64_t len, std::chrono::steady_clock::time_point deadline);

  // Owns again an extent that an Allocation of this pool detach()ed: exactly that offset and
  // capacity, once.
  Allocation adopt(uint64_t offset, uint64_t capacity) {
    return Allocation(this, offset, capacity);
  }

  PoolUsage usage() const;
  std::byte* base() const { return base_; }
  uint64_t size() const { return size_; }

 private:
  friend class Allocation;
  void release(uint64_t offset, uint64_t capacity);
  // allocate() with mu_ already held.
  Result<Allocation> allocate_locked(uint64_t len);
  // Implementation details are private to memory_pool.cc; declared here for the mutex's sake.
  struct State;
  std::byte* base_;
  uint64_t size_;
  mutable std::mutex mu_;
  std::condition_variable released_;
  std::unique_ptr<State> state_;  // guarded by mu_
};

}  // namespace kvrdma::memory
