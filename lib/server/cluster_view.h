// ClusterView: what a node serves by in cluster mode (docs/cluster.md, "Serving by the map"):
// the slot map it last learnt and the slots it has handed off. Every data request asks check()
// for its key's slot; the cluster agent (cluster_node) installs maps and marks hand-offs.
// Outside cluster mode (enabled() false) every check says kServe.
//
// Thread-safe: check() reads a snapshot under a short lock; set_map() and mark_handed_off() may
// run concurrently with any number of checks. write_gate() is held shared by a request that
// writes (PUT, PutCommit, PutMany, DELETE) from its check until its store change is done, and
// exclusively by the mover while it hands slots off, so no write lands in a slot after its
// hand-off.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "cluster/slot_map.h"
#include "kv_cache.pb.h"
#include "kvrdma/status.h"

namespace kvrdma::server {

enum class SlotOp { kRead, kWrite, kDelete };

struct SlotVerdict {
  enum Kind {
    kServe,           // this node owns the slot (or imports it, or cluster mode is off)
    kServeMovingOut,  // owns it while it moves out: a GET miss becomes a `moved` redirect, a
                      // DELETE must also reach the next owner (detail names it)
    kRefuse,          // answer `refusal()`: wrong owner, or `moved` once handed off
  };
  Kind kind = kServe;
  v1::WrongOwner detail;  // for kServeMovingOut and kRefuse

  // FAILED_PRECONDITION with the typed wrong-owner detail.
  Status refusal() const;
};

class ClusterView {
 public:
  // `self`: this node's id; `enabled`: cluster mode on.
  ClusterView(uint32_t self, bool enabled) : self_(self), enabled_(enabled) {}

  bool enabled() const { return enabled_; }
  uint32_t self() const { return self_; }

  // The map this node serves by (an empty epoch-0 map before the first one arrives).
  std::shared_ptr<const cluster::SlotMap> map() const;
  // Installs a newer map (an older or equal epoch is ignored; returns whether it was taken).
  // Hand-off marks of slots that no longer move out of this node, or now move to another next
  // owner, are dropped.
  bool set_map(std::shared_ptr<const cluster::SlotMap> map);
  // These slots of this node are handed off to their next owner: from now on every request for
  // them is refused with a `moved` redirect. Call with write_gate() held exclusively.
  void mark_handed_off(std::span<const uint32_t> slots);
  bool handed_off(uint32_t slot) const;

  // The verdict for a request on `slot`. `from_peer`: the request comes over a node-to-node
  // session (a move into this node): allowed when this node is the slot's next owner. An
  // importing node serves redirected clients too, so today no verdict depends on it.
  SlotVerdict check(uint32_t slot, SlotOp op, bool from_peer = false) const;

  // While false (the node lost its lease: it was declared dead), data requests are refused
  // with UNAVAILABLE by the service. Starts true.
  void set_serving(bool serving);
  // Also false, in a map with replicas, once the lease may have expired by this node's clock
  // (set_lease_until): another node may own its slots by now (fencing, docs/cluster.md).
  bool serving() const;
  // The node's etcd lease is known alive until `until` (a keepalive answered). Starts unbounded.
  void set_lease_until(std::chrono::steady_clock::time_point until);

  std::shared_mutex& write_gate() const { return write_gate_; }

 private:
  v1::WrongOwner detail_for(const cluster::SlotMap& m, uint32_t slot, uint32_t node,
                            bool moved) const;

  const uint32_t self_;
  const bool enabled_;
  mutable std::mutex mu_;
  std::shared_ptr<const cluster::SlotMap> map_;  // guarded by mu_
  std::vector<bool> handed_off_;                 // guarded by mu_; kSlots entries or empty
  bool serving_ = true;                          // guarded by mu_
  std::chrono::steady_clock::time_point lease_until_ =
      std::chrono::steady_clock::time_point::max();  // guarded by mu_
  mutable std::shared_mutex write_gate_;
};

}  // namespace kvrdma::server
