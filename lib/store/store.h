// Store: key -> entry {pool extent, length, expiry, pins, LRU position}. Knows nothing of
// transports or gRPC. Thread-safe; one mutex guards the index (shard it if the bench says so).
// Compact by design (issue 4: <= 100 bytes per key beyond the value): each key is ONE heap block,
// a 56-byte entry with the key bytes right after it, linked into an intrusive hash chain and an
// intrusive LRU list; the only other per-key cost is one bucket pointer (8 bytes at load 1).
//
// Invariants: a key maps to a whole, committed value; overwrite swaps entries atomically, so a
// reader holds either the old value or the new one. A pool extent is freed only when its entry is
// out of the index *and* no ValueRef pins it: DELETE, overwrite and eviction never free memory a
// write is still reading. Eviction takes least-recently-used unpinned entries only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "kvrdma/status.h"
#include "memory/memory_pool.h"

namespace kvrdma::store {

struct Entry;  // private to store.cc
struct Index;  // private to store.cc

// Pins a stored value for as long as it lives. Move-only; may outlive the Store's index entry
// (not the Store itself).
class ValueRef {
 public:
  ValueRef() = default;
  ValueRef(ValueRef&& other) noexcept
      : entry_(std::exchange(other.entry_, nullptr)), index_(other.index_) {}
  ValueRef& operator=(ValueRef&& other) noexcept;  // unpins what this held
  ValueRef(const ValueRef&) = delete;
  ValueRef& operator=(const ValueRef&) = delete;
  ~ValueRef();

  const std::byte* data() const;
  uint64_t size() const;         // the value's length
  uint64_t pool_offset() const;  // where the value starts in the pool region

 private:
  friend class Store;
  ValueRef(Entry* entry, Index* index);  // pins; only under the index lock
  void unpin();
  Entry* entry_ = nullptr;
  Index* index_ = nullptr;
};

struct StoreOptions {
  bool evict = true;             // LRU eviction when full; false: RESOURCE_EXHAUSTED
  uint64_t max_value_bytes = 0;  // 0: no limit beyond the pool size
  uint64_t max_key_bytes = 4096;
};

struct StoreStats {
  uint64_t keys = 0;
  uint64_t value_bytes = 0;
  uint64_t pinned = 0;  // entries with at least one live ValueRef, in the index or not
  uint64_t evictions = 0;
  uint64_t expirations = 0;
};

class Store {
 public:
  // `pool` and `clock` must outlive the Store; the Store must outlive every ValueRef.
  Store(memory::MemoryPool& pool, const Clock& clock, StoreOptions options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Checks key and value size against the limits: INVALID_ARGUMENT for an empty key or one over
  // max_key_bytes, INVALID_ARGUMENT for a value over max_value_bytes (the message says both sizes).
  Status check(std::string_view key, uint64_t value_len) const;

  // Pool memory for a value of `len` bytes, evicting LRU unpinned entries when allowed.
  // RESOURCE_EXHAUSTED when it cannot be found.
  Result<memory::Allocation> reserve(uint64_t len);

  // Publishes `len` bytes already written at `allocation` under `key`, replacing any old value.
  // ttl zero: no expiry; a TTL is kept to the millisecond, rounded up, and at most ~278 years.
  Status commit(std::string_view key, memory::Allocation allocation, uint64_t len,
                std::chrono::milliseconds ttl);

  // check + reserve + copy + commit.
  Status put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl);

  // Pins the value; NOT_FOUND when absent or expired (an expired entry is dropped here).
  // Marks the entry most recently used.
  Result<ValueRef> get(std::string_view key);

  // Unlinks the key at once; false when it was absent (or expired).
  bool erase(std::string_view key);

  // Drops every expired entry; returns how many.
  size_t sweep_expired();

  // For moving slots between cluster nodes. The keys (not expired) for which `pred` holds, in no
  // particular order; `pred` runs under the index lock, so it must be cheap and must not call
  // the Store.
  std::vector<std::string> keys_where(const std::function<bool(std::string_view)>& pred) const;
  // The time `ref`'s value has left to live: nullopt when it has no TTL, at least 1 ms
  // otherwise (a value about to expire is still moved with the shortest TTL, not with none).
  std::optional<std::chrono::milliseconds> ttl_left(const ValueRef& ref) const;
  // Unlinks `key` only while it still maps to the entry `ref` pins (not overwritten or deleted
  // since `ref` was taken); false otherwise.
  bool erase_if_same(std::string_view key, const ValueRef& ref);

  StoreStats stats() const;

 private:
  std::unique_ptr<Index> index_;
};

}  // namespace kvrdma::store
