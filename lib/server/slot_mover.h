// SlotMover: moves this node's values out of the slots the map gives another owner
// (docs/cluster.md, "Moving values"): per destination, passes that copy each key over a
// PeerSession and erase it here if it is still the same entry, then a final pass with writes
// blocked (ClusterView::write_gate held exclusively) after which the slots are marked handed
// off; once every slot moving out in the current map is handed off, `write_handoff(epoch)`
// tells the controller (it writes handoff/<id> = epoch in etcd).
//
// Thread-safety: notify(), forward_delete() and stop() may be called from any thread; the
// moving runs on the mover's RoundLoop thread. Locks: mu_ (hand-off epoch), sessions_mu_ (the
// peer sessions) and the loop's are never held together; the final pass asks the loop whether
// it stops while it holds the write gate (order: write gate, then the loop's lock).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "cluster/slot_map.h"
#include "server/peer_session.h"
#include "server/round_loop.h"
#include "server/service.h"

namespace kvrdma::server {

class SlotMover {
 public:
  // `write_handoff(epoch)`: publishes that every slot moving out of this node in map `epoch`
  // went over; an error is retried on the next wake. `core` must outlive the mover.
  SlotMover(ServerCore& core, uint32_t self, std::function<Status(uint64_t)> write_handoff);
  ~SlotMover();  // stop()
  SlotMover(const SlotMover&) = delete;
  SlotMover& operator=(const SlotMover&) = delete;

  // A new map was installed (or the node was fenced / registered again): look again.
  void notify();
  // Forgets the hand-off already written (after the node registered again under a new lease).
  void reset_handoff();
  // Ends the moving (an unfinished slot stays with this node) and closes the peer sessions.
  void stop();

  // DELETE of a key in a slot moving out: deletes it at the next owner `to` too.
  Status forward_delete(std::string_view key, const v1::WrongOwner& to,
                        std::chrono::steady_clock::time_point deadline);

 private:
  using Outcome = RoundLoop::Outcome;
  struct PassResult {
    uint64_t seen = 0;   // keys of the slots found here
    uint64_t moved = 0;  // of them, copied to the peer and erased here
  };

  // One look at map `m`: moves what is pending (kProgress), or writes the hand-off once nothing
  // is (kIdle); kRetry when a peer or etcd could not be reached.
  Outcome round(const cluster::SlotMap& m);
  // Moves `slots` (flags by slot, all moving to `dest`): passes, then the final pass under the
  // write gate and the hand-off marks. Clears the flags of moves cancelled meanwhile.
  Status move_to(const cluster::SlotMap& m, uint32_t dest, std::vector<bool>& slots);
  // Copies every key of `slots` to `to` and erases it here if unchanged.
  Result<PassResult> pass(PeerSession& to, const std::vector<bool>& slots, uint64_t epoch);
  // The open session with `node` (opened on first use, again when its address changed).
  Result<std::shared_ptr<PeerSession>> session(const cluster::NodeInfo& node);
  bool stopping() const;

  ServerCore& core_;
  const uint32_t self_;
  const std::function<Status(uint64_t)> write_handoff_;
  mutable std::mutex mu_;
  uint64_t handoff_written_ = 0;  // guarded by mu_; the epoch last written, 0: none
  // Its own lock: opening a session may take seconds and must not hold up notify().
  std::mutex sessions_mu_;
  std::map<uint32_t, std::shared_ptr<PeerSession>> sessions_;  // guarded by sessions_mu_
  std::unique_ptr<RoundLoop> loop_;  // last: its thread runs round() on the members above
};

}  // namespace kvrdma::server
