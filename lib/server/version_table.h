// VersionTable: the newest write version a node applied per key (a delete leaves a tombstone),
// and per slot the highest version applied (docs/cluster.md "Replicas"). A primary records the
// versions it issues; a replica applies a pushed write only when its version moves the key
// forward, so writes of one key end in the primary's order at every copy.
//
// Thread-safe: keys are spread over kShards shards, each with its own mutex; the slot maxima are
// atomics. with_key() runs a caller's function under the key's shard lock, which also orders a
// primary's store change with the version it issues.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
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
  VersionTable();

  // Runs `fn(current)` under `key`'s shard lock, `current` the key's version (0: none); when it
  // returns a non-zero version, that becomes the key's version and raises its slot's maximum.
  void with_key(std::string_view key, const std::function<uint64_t(uint64_t current)>& fn);
  uint64_t version_of(std::string_view key) const;
  // The highest version applied to a key of `slot` (0: none).
  uint64_t slot_version(uint32_t slot) const {
    return slot_max_[slot].load(std::memory_order_acquire);
  }
  // Forgets one key (its value left this node: moved out to a slot's new owner).
  void forget(std::string_view key);
  // Forgets the keys `pred` holds for (and, when `slots` is given, resets those slots' maxima).
  void forget_where(const std::function<bool(std::string_view)>& pred,
                    const std::vector<bool>* slots = nullptr);
  void clear();

 private:
  static constexpr size_t kShards = 64;
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, uint64_t> versions;  // guarded by mu
  };
  Shard& shard(std::string_view key) const;

  mutable std::array<Shard, kShards> shards_;
  std::vector<std::atomic<uint64_t>> slot_max_;
};

}  // namespace kvrdma::server
