// ReplicaFiller: fills the replicas the map adds to this node's slots (docs/cluster.md
// "Replicas", re-replication): for each replica not yet ready, copies every key of the slot with
// its version and remaining TTL (large values by transport write from this node's pool into the
// replica's), while clients keep reading and writing here; live writes reach the replica through
// Replication meanwhile, and versions keep the two from undoing each other. Once every
// unfilled replica of this node's slots is filled, `write_filled(epoch)` tells the controller,
// which marks them ready in the next map (only if none came between).
//
// A fill holds from map to map while its replica keeps its seat of the slot in every map
// installed here: a replica drops what it held of a slot only when it takes a seat it did not
// have, and it takes a fill's pushes only at the pusher's map or a later one. map_installed()
// carries the filled pairs (and those being filled) from a map to the one right after it; across
// a gap (a map this node never installed) the replica may have left and come back empty, and
// every fill starts again. Without the carry, each map that marked another node's replicas ready
// restarted this node's finished fills (3x the bytes after a death, bench/README.md).
//
// Thread-safety: notify(), reset() and stop() may be called from any thread; the filling runs
// on the filler's RoundLoop thread. mu_ guards the filled pairs; it is never held with the
// loop's lock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "cluster/slot_map.h"
#include "server/replication.h"
#include "server/round_loop.h"
#include "server/service.h"

namespace kvrdma::server {

class ReplicaFiller {
 public:
  // `core.replication` must be set and outlive the filler.
  ReplicaFiller(ServerCore& core, uint32_t self, std::function<Status(uint64_t)> write_filled);
  ~ReplicaFiller();  // stop()
  ReplicaFiller(const ReplicaFiller&) = delete;
  ReplicaFiller& operator=(const ReplicaFiller&) = delete;

  // `next` is being installed over `before` (called before the map is in force): carries the
  // fills (above), then looks again.
  void map_installed(const cluster::SlotMap& before, const cluster::SlotMap& next);
  // Look again (the node was fenced or registered again).
  void notify();
  // filled/<id> is gone (it lived under a lease that expired): write it again, the fills kept.
  void forget_written();
  // Forgets what was filled and written (after the node was fenced or registered again).
  void reset();
  void stop();

  // Keys and bytes copied by fills so far.
  uint64_t keys_filled() const { return keys_.load(std::memory_order_relaxed); }
  uint64_t bytes_filled() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  using Outcome = RoundLoop::Outcome;
  Outcome round(const cluster::SlotMap& m);
  // Copies every key of `slots` to replica `node`; OK when all went over.
  Status fill(const cluster::SlotMap& m, uint32_t node, const std::vector<bool>& slots);
  bool stopping() const;
  static uint64_t pair(uint32_t slot, uint32_t node) { return (uint64_t{slot} << 32) | node; }
  // The (slot, replica) pairs this node fills by `m`: its slots not moving out, every replica.
  std::set<uint64_t> fill_pairs(const cluster::SlotMap& m) const;

  ServerCore& core_;
  const uint32_t self_;
  const std::function<Status(uint64_t)> write_filled_;
  std::atomic<uint64_t> keys_{0}, bytes_{0};
  mutable std::mutex mu_;
  uint64_t filled_written_ = 0;      // guarded by mu_: the epoch last written
  std::set<uint64_t> filled_;        // guarded by mu_: (slot, replica) pairs filled (or carried)
  std::set<uint64_t> filling_;       // guarded by mu_: pairs whose fill runs now (carried too)
  uint64_t filled_epoch_ = 0;        // guarded by mu_: ... for this map epoch (0: none)
  std::unique_ptr<RoundLoop> loop_;  // last: its thread runs round() on the members above
};

}  // namespace kvrdma::server
