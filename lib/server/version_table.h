// VersionTable: the newest write version a node applied per key (a delete leaves a tombstone),
// and per slot the highest version applied (docs/cluster.md "Replicas"). A primary records the
// versions it issues; a replica applies a pushed write only when its version moves the key
// forward, so writes of one key end in the primary's order at every copy.
//
// Bounded: a tombstone is kept `keep_tombstones` (longer than any push may be in flight: a
// write's pushes end at its deadline, at most kMaxPushTime) and then pruned; the slot's floor
// rises to its version, and a key with no entry reads as being at its slot's floor. So a push
// older than a pruned tombstone is still refused, and the table holds the keys a node holds plus
// the deletes of the last `keep_tombstones`, not every key it has ever seen.
//
// Thread-safe: keys are spread over kShards shards, each with its own mutex; the slot maxima and
// floors are atomics. with_key() runs a caller's function under the key's shard lock, which also
// orders a primary's store change with the version it issues.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cluster/slot_map.h"

namespace kvrdma::server {

class VersionTable {
 public:
  using Steady = std::chrono::steady_clock;
  using Clock = std::function<Steady::time_point()>;
  // The longest a replicated write's pushes may run (a write's deadline is capped at it).
  static constexpr std::chrono::seconds kMaxPushTime{60};
  // How long a tombstone stays at least: past the longest push, with a margin for the last
  // attempt's RPC still being delivered.
  static constexpr std::chrono::seconds kKeepTombstones{kMaxPushTime + std::chrono::seconds(10)};

  // `clock` is injected for tests (steady_clock by default).
  explicit VersionTable(Steady::duration keep_tombstones = kKeepTombstones, Clock clock = {});

  // Runs `fn(current)` under `key`'s shard lock, `current` the key's version (its slot's floor
  // when it has none: 0 unless tombstones of the slot were pruned); when it returns a non-zero
  // version, that becomes the key's version and raises its slot's maximum. `erase`: that version
  // is a delete's (a tombstone, pruned after keep_tombstones).
  void with_key(std::string_view key, const std::function<uint64_t(uint64_t current)>& fn,
                bool erase = false);
  uint64_t version_of(std::string_view key) const;
  // The highest version applied to a key of `slot` (0: none).
  uint64_t slot_version(uint32_t slot) const {
    return slot_max_[slot].load(std::memory_order_acquire);
  }
  // The highest version of a pruned tombstone of `slot` (0: none).
  uint64_t slot_floor(uint32_t slot) const {
    return slot_floor_[slot].load(std::memory_order_acquire);
  }
  // Keys with an entry (tombstones included).
  size_t size() const;
  // Forgets one key (its value left this node: moved out to a slot's new owner).
  void forget(std::string_view key);
  // Forgets the keys `pred` holds for (and, when `slots` is given, resets those slots' maxima
  // and floors).
  void forget_where(const std::function<bool(std::string_view)>& pred,
                    const std::vector<bool>* slots = nullptr);
  void clear();

 private:
  static constexpr size_t kShards = 64;
  struct Tombstone {
    std::string key;
    uint64_t version = 0;
    Steady::time_point at;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, uint64_t> versions;  // guarded by mu
    std::deque<Tombstone> tombstones;                    // guarded by mu; oldest first
  };
  Shard& shard(std::string_view key) const;
  // Drops the tombstones of `s` older than keep_tombstones_ (with s.mu held).
  void prune(Shard& s, Steady::time_point now);
  static void raise(std::atomic<uint64_t>& v, uint64_t to);

  const Steady::duration keep_tombstones_;
  const Clock clock_;
  mutable std::array<Shard, kShards> shards_;
  std::vector<std::atomic<uint64_t>> slot_max_;
  std::vector<std::atomic<uint64_t>> slot_floor_;
};

}  // namespace kvrdma::server
