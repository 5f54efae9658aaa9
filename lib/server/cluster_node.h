// ClusterNode: the cluster agent of a kv-server node (docs/cluster.md). It registers the node in
// the MetaStore (etcd) under a lease and keeps the lease alive, competes for the controller key
// and, while it holds it, runs the controller (next_map, published by compare-and-swap), follows
// the published map into core.cluster, moves values out of slots that go to other nodes
// (SlotMover), fences the node when its lease is found gone, and leaves gracefully.
//
// Threads: an agent thread (range the prefix, elect, control, install maps; wakes on every
// change), a keepalive thread (every lease TTL / 3; fencing and registering again), and the
// mover's thread (the keepalive side is in cluster_node_lease.cc). Public methods may be called
// from any thread. Lock order: mu_ before the mover's locks; no MetaStore call is made with mu_
// held.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cluster/meta_store.h"
#include "cluster/slot_map.h"
#include "kvrdma/server.h"
#include "server/replica_filler.h"
#include "server/service.h"
#include "server/slot_mover.h"

namespace kvrdma::server {

class ClusterNode {
 public:
  // Registers core.options.node_id at core.public_address under cluster core.options.cluster
  // and starts the agent. FAILED_PRECONDITION naming the live node's address when the id is
  // registered by another node; a registration left by this node's previous run (same address)
  // is waited out for up to one lease. `meta` is shared (tests run many nodes on one store);
  // `owns_meta`: nobody else uses it, so stop() may cancel its waits.
  static Result<std::unique_ptr<ClusterNode>> start(ServerCore& core,
                                                    std::shared_ptr<cluster::MetaStore> meta,
                                                    bool owns_meta);
  ~ClusterNode();  // stop()
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  // Marks the node "leaving", waits until a map shows it owning no slot and taking none (its
  // values moved to the others), then revokes its lease. DEADLINE_EXCEEDED saying how many
  // slots it still owns when `timeout` passes first. The node keeps answering (with redirects)
  // until it is stopped.
  Status leave(std::chrono::milliseconds timeout);
  // Stops the agent and revokes the lease (the cluster sees the node gone at once; values it
  // still holds are lost, as when it dies). Idempotent.
  void stop();

  // For tests and stats.
  cluster::LeaseId lease() const;
  // Keys this node copied into replicas by fills (live writes not counted); 0 without replicas.
  uint64_t keys_filled() const { return filler_ ? filler_->keys_filled() : 0; }
  bool is_controller() const;
  // True while this node is the controller and has just taken over: it does not yet reassign
  // the slots of nodes missing from the registrations (takeover_grace()).
  bool in_takeover_grace() const;
  bool fenced() const;

  // DELETE forwarding for core.forward_delete (UNAVAILABLE once stopped).
  Status forward_delete(std::string_view key, const v1::WrongOwner& to,
                        std::chrono::steady_clock::time_point deadline);

 private:
  ClusterNode(ServerCore& core, std::shared_ptr<cluster::MetaStore> meta, bool owns_meta);

  std::string key(std::string_view suffix) const { return prefix_ + std::string(suffix); }
  std::string registration(std::string_view state) const;  // v1::ClusterNode, serialized
  // Grants a lease and creates nodes/<id> under it; waits out this node's previous life until
  // `patience` ends.
  Status register_node(std::chrono::milliseconds patience);
  void agent_loop();
  void keepalive_loop();
  // One look at the whole prefix: install the map, take the controller key when free, and
  // publish the next map while controller.
  // True when it deferred a decision and wants to look again even if nothing changes.
  bool on_state(const cluster::MetaRange& range);
  void install(std::shared_ptr<const cluster::SlotMap> map);
  void fence();
  bool try_register_again();
  // After keep_alive found the lease gone: registers again and keeps serving when the map has
  // not moved on (etcd was unreachable past the lease, nobody took this node's slots); false
  // when the node must be fenced instead.
  bool resume_after_expiry();
  // True when a slot's owner is not among `registered` (a node died or has not re-registered).
  static bool owner_missing(const cluster::SlotMap& map,
                            const std::vector<cluster::NodeInfo>& registered);
  // How long a new controller waits for missing nodes to register again before reassigning
  // their slots: well over the keepalive retry period, well under a lease.
  std::chrono::milliseconds takeover_grace() const {
    return std::min(std::chrono::milliseconds(1000), lease_ttl_ / 2);
  }
  Status write_handoff(uint64_t epoch);
  // filled/<id> = epoch: every replica of this node's slots in map `epoch` is filled.
  Status write_filled(uint64_t epoch);
  // Waits up to `d` or until stop(); true when stopping.
  bool pause(std::chrono::milliseconds d);

  ServerCore& core_;
  const std::shared_ptr<cluster::MetaStore> meta_;
  const bool owns_meta_;
  const uint32_t self_;
  const std::string prefix_;  // "/kvrdma/<cluster>/"
  const std::chrono::milliseconds lease_ttl_;
  std::unique_ptr<SlotMover> mover_;
  std::unique_ptr<ReplicaFiller> filler_;  // after mover_: stopped first

  mutable std::mutex mu_;
  std::condition_variable cv_;                              // stop, map installed
  bool stop_ = false;                                       // guarded by mu_
  cluster::LeaseId lease_ = 0;                              // guarded by mu_
  bool fenced_ = false;                                     // guarded by mu_
  std::chrono::steady_clock::time_point fenced_at_;         // guarded by mu_
  bool controller_ = false;                                 // guarded by mu_
  std::chrono::steady_clock::time_point controller_since_;  // guarded by mu_
  bool left_ = false;              // guarded by mu_: leave() revoked the lease
  std::string state_ = "active";   // guarded by mu_
  bool etcd_down_logged_ = false;  // guarded by mu_
  bool replicas_warned_ = false;   // agent thread only
  int reregister_failures_ = 0;    // keepalive thread only
  std::thread agent_;
  std::thread keepalive_;
};

// Test seam and internal entry points of kvrdma::Server (server.cc).
struct ServerAccess {
  // Server::start with a given MetaStore instead of connecting to --etcd-endpoints.
  // `meta_owned`: this node is its only user (as with --etcd-endpoints), so the agent waits on
  // it as a kv-server does (long waits, cancelled at stop) instead of polling a shared store.
  static Result<std::unique_ptr<Server>> start(const ServerOptions& options,
                                               std::shared_ptr<cluster::MetaStore> meta,
                                               bool meta_owned = false);
  static ServerCore& core(Server& server);
  // nullptr outside cluster mode.
  static ClusterNode* cluster_node(Server& server);
};

}  // namespace kvrdma::server
