// Replication: the write path of replicated slots (docs/cluster.md "Replicas").
//
// On a primary (the slot's owner, in a map with replicas > 1) write() applies a client's write
// under the key's order, issues its version and pushes it to every replica of the slot over a
// PeerSession (small values inline by Put, large ones by PutBegin / transport write from this
// node's pool / PutCommit, deletes by Delete, each with `replica_version`), and reports the
// outcome once every replica in the current map holds it. On a replica, apply_*() take such a
// pushed write when it comes from the slot's owner by this node's map and moves the key forward.
//
// Thread-safety: every method may be called from any thread. Pushes run on the worker threads
// owned here; write()'s `done` runs on one of them. Locks: mu_ (the job queue), sessions_mu_
// (peer sessions); never held together, and no RPC is made under either. A VersionTable shard
// lock is held across one store change, never across an RPC.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cluster/slot_map.h"
#include "server/peer_session.h"
#include "server/service.h"
#include "server/session.h"
#include "server/version_table.h"

namespace kvrdma::server {

class Replication {
 public:
  // The low 40 bits of a version count writes within one map epoch; the epoch is above them, so
  // a later epoch's primary always issues higher versions than any earlier one.
  static constexpr int kCounterBits = 40;
  using Steady = std::chrono::steady_clock;
  // The outcome of a replicated write and the version it was given (0 when not applied).
  using Done = std::function<void(Status, uint64_t version)>;

  // `core` must outlive this; core.cluster must be set. The push workers start with the first
  // write that has replicas to reach.
  explicit Replication(ServerCore& core);
  ~Replication();  // stop()
  Replication(const Replication&) = delete;
  Replication& operator=(const Replication&) = delete;
  // Fails queued pushes (UNAVAILABLE), joins the workers and closes the peer sessions.
  // Idempotent.
  void stop();

  VersionTable& versions() { return versions_; }

  // --- primary ---
  // True when this node replicates client writes of `key`: the map has replicas > 1 and this
  // node owns the key's slot or imports it (a move's writes after the hand-off). Values a move
  // copies in are not pushed again: the replicas have them from the owner.
  bool replicates(std::string_view key) const;
  // Runs `apply` (the store change; a put must leave the new value stored) under the key's
  // order and, when it succeeded, issues the write's version and pushes it (`erase`: a delete)
  // to every replica of the slot in the current map. `done` runs once each of them holds it
  // (OK), or with the first failure (UNAVAILABLE: the write was applied here but is not
  // acknowledged), or with apply's error; on a worker thread, or on this one when there is
  // nothing to push.
  void write(std::string_view key, bool erase, const std::function<Status()>& apply,
             Steady::time_point deadline, Done done);

  // --- replica ---
  // Whether a pushed write for `key` from session `from` may be applied here: OK when `from` is
  // a node session of the slot's owner (or next owner) and this node is a replica (or next owner)
  // of it by its map; otherwise FAILED_PRECONDITION with the typed wrong-owner detail (the pusher
  // retries while its map is newer than ours, and gives up when ours shows it lost the slot:
  // fencing). `pusher_epoch` is the map epoch the pusher pushes by (0: not checked): while this
  // node's map is older it refuses too (the pusher retries), so a copy is never taken under an
  // older map in which this node still holds the slot and then dropped when it installs a map in
  // between that takes the slot away (and the pusher's map gives it back, empty).
  Status admit_push(const Session& from, std::string_view key, uint64_t pusher_epoch) const;
  Status apply_put(const Session& from, const v1::PutRequest& req);
  // PutCommit of a reservation whose PutBegin carried replica_version.
  Status apply_commit(const Session& from, Reservation r);
  // The version the key is now at, or an error; existed tells whether a value was erased.
  Status apply_delete(const Session& from, const v1::DeleteRequest& req, bool* existed);
  // DropReplicaSlots: before filling this node's replica seats of `slots` afresh, their owner
  // has it drop what it holds of them (a replica that missed a map in which it had no seat
  // missed the deletes made then; the fill alone would leave those keys). Admitted for a node
  // session of the slots' owner by this node's map, a pusher map no newer than it, and seats
  // not ready in it (a ready seat holds what its owner vouched for, and dropping it could lose
  // the only other copy: FAILED_PRECONDITION, not retried). Drops values, keeps versions, and
  // fences the slots: a push issued under a map before `pusher_epoch` (still in flight from
  // before the drop) is not applied; the fill copies every such write again above the fence.
  // One drop at a time, each stopping when the seat stops being a not-ready one mid-way (this
  // node promoted, say); returns the values dropped.
  Result<uint64_t> drop_for_fill(const Session& from, uint64_t pusher_epoch,
                                 std::span<const uint32_t> slots);

  // --- reads ---
  // A GET of `key` at a node that is not the slot's owner (a replica): OK when this node has
  // applied `min_version` in the slot, else a `moved` redirect to the owner.
  Status check_read(std::string_view key, uint64_t min_version) const;

  // The session with `node` (opened on first use; again when its address changed). Shared with
  // the ReplicaFiller.
  Result<std::shared_ptr<PeerSession>> session(const cluster::NodeInfo& node);
  // Pushes `key` (the value `ref` pins, or a delete when `ref` is null) at `version` to replica
  // `node` of `slot`: retried until it holds it, `deadline` passes, or the current map no longer
  // names `node` a replica of `slot` (then OK: it is no copy any more). UNAVAILABLE once this
  // node no longer owns the slot.
  Status push_to(uint32_t node, uint32_t slot, std::string_view key, const store::ValueRef* ref,
                 uint64_t version, Steady::time_point deadline);

  // A value and the version it goes to a replica being filled at (ReplicaFiller).
  struct Copy {
    store::ValueRef ref;
    uint64_t version = 0;
  };
  // Reads `key`'s value under its order and gives it a fresh version for a fill (recorded here,
  // so later writes order after it); nullopt when the key is gone.
  std::optional<Copy> copy_for_fill(std::string_view key);

  // Bytes pushed to replicas (live writes and fills), for stats and the bench.
  uint64_t bytes_pushed() const { return bytes_pushed_.load(std::memory_order_relaxed); }
  void add_bytes_pushed(uint64_t n) { bytes_pushed_.fetch_add(n, std::memory_order_relaxed); }

 private:
  // One replicated write, shared by its pushes (one per replica, run in parallel).
  struct Write {
    std::string key;
    uint32_t slot = 0;
    bool erase = false;
    store::ValueRef ref;  // the value pushed (put), pinned until every replica has it
    uint64_t version = 0;
    Steady::time_point deadline;
    Done done;
    std::atomic<int> left{0};  // pushes not finished
    std::mutex mu;
    Status outcome;  // guarded by mu: the first failure
  };
  struct Task {
    std::shared_ptr<Write> write;
    uint32_t replica = cluster::kNoNode;
  };
  void worker();
  void start_workers();  // with mu_ held
  // Records one push's outcome; the last one unpins the value and reports the write.
  static void finish(Task& task, Status s);
  uint64_t next_version(uint64_t current, std::string_view key);
  // Whether a pushed PUT at `version` applies over the key's `current` version (under its order).
  bool moves_forward(std::string_view key, uint64_t current, uint64_t version);
  Status refusal(const cluster::SlotMap& m, uint32_t slot, std::string_view why) const;
  // Whether a push at `version` of a key of `slot` is below the slot's fill fence (not applied).
  bool fenced_off(uint32_t slot, uint64_t version) const {
    return version < fence_[slot].load(std::memory_order_acquire);
  }

  ServerCore& core_;
  const uint32_t self_;
  VersionTable versions_;
  std::atomic<uint64_t> counter_{0};
  std::atomic<uint64_t> bytes_pushed_{0};
  // Per slot: pushes at versions below it are not applied (drop_for_fill raises it).
  std::vector<std::atomic<uint64_t>> fence_ = std::vector<std::atomic<uint64_t>>(cluster::kSlots);
  std::mutex drop_mu_;  // one drop_for_fill at a time

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                 // guarded by mu_
  std::deque<Task> tasks_;            // guarded by mu_
  std::vector<std::thread> workers_;  // guarded by mu_; started on first use
  const log::Logger* logger_;         // the server's, for the workers

  std::mutex sessions_mu_;
  std::map<uint32_t, std::shared_ptr<PeerSession>> sessions_;  // guarded by sessions_mu_
};

}  // namespace kvrdma::server
