// PeerSession: a node-to-node KvCache session, opened by a cluster node to hand values to the
// next owner of a slot (docs/cluster.md, "Moving values"). It is a client session with
// peer_node set, whose receive region is this node's pool: a large value goes by PutBegin at the
// peer, a transport write straight from this node's pool into the peer's pool, and PutCommit, so
// value bytes never ride gRPC. Small values go inline by Put.
//
// A refusal because the peer has not learnt the map that makes it the slot's next owner yet
// (FAILED_PRECONDITION with a wrong-owner detail) is retried until the call's deadline; so is a
// lost session (re-opened once per call).
//
// Thread-safe: the mover and DELETE forwarding may call it at once; the session state is
// swapped under mu_ when it is re-opened.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/slot_map.h"
#include "kv_cache.grpc.pb.h"
#include "server/service.h"
#include "store/store.h"

namespace kvrdma::server {

class PeerSession {
 public:
  using Steady = std::chrono::steady_clock;

  // Dials `peer` (its client address) and opens a session; UNAVAILABLE naming the peer when it
  // cannot be reached by `deadline`. `core` must outlive the session.
  static Result<std::unique_ptr<PeerSession>> open(ServerCore& core, uint32_t self,
                                                   const cluster::NodeInfo& peer,
                                                   Steady::time_point deadline);
  // Ends the session at the peer (Goodbye, bounded by 1 s).
  ~PeerSession();
  PeerSession(const PeerSession&) = delete;
  PeerSession& operator=(const PeerSession&) = delete;

  // Stores at the peer the value `ref` pins (a value of this node's store, so in its pool)
  // under `key` with `ttl` (nullopt: none), as routed by map `epoch`. `replica_version` (not 0):
  // a write pushed to a replica (docs/cluster.md "Replicas") at that version.
  Status put(std::string_view key, const store::ValueRef& ref,
             std::optional<std::chrono::milliseconds> ttl, uint64_t epoch,
             Steady::time_point deadline, uint64_t replica_version = 0);
  // Deletes `key` at the peer; OK whether or not it was there.
  Status erase(std::string_view key, uint64_t epoch, Steady::time_point deadline,
               uint64_t replica_version = 0);

  // DropReplicaSlots at the peer: it drops what it holds of `slots` (its not-ready replica
  // seats of slots this node owns by map `epoch`) before this node fills them. OK too when the
  // peer predates the call (UNIMPLEMENTED): it then keeps what it holds, as before.
  Status drop_replica_slots(const std::vector<uint32_t>& slots, uint64_t epoch,
                            Steady::time_point deadline);

  const cluster::NodeInfo& peer() const { return peer_; }

 private:
  struct State {
    v1::HelloReply hello;
    std::shared_ptr<transport::RemoteRegion> pool;  // the peer's pool
  };

  PeerSession(ServerCore& core, uint32_t self, cluster::NodeInfo peer);
  Result<std::shared_ptr<const State>> hello(Steady::time_point deadline);
  std::shared_ptr<const State> current() const;
  // Runs `call` until it succeeds, fails for good, or `deadline` passes; re-opens a lost
  // session and waits out "not the owner yet" refusals.
  Status with_retries(std::string_view what, Steady::time_point deadline,
                      const std::function<Status(const State&)>& call);
  Status put_once(const State& st, std::string_view key, const store::ValueRef& ref,
                  uint64_t ttl_ms, uint64_t epoch, Steady::time_point deadline,
                  uint64_t replica_version);
  void prepare(grpc::ClientContext& ctx, Steady::time_point deadline) const;

  ServerCore& core_;
  const uint32_t self_;
  const cluster::NodeInfo peer_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KvCache::Stub> stub_;
  mutable std::mutex mu_;
  std::shared_ptr<const State> state_;  // guarded by mu_
};

}  // namespace kvrdma::server
