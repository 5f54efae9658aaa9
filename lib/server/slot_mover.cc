#include "server/slot_mover.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/logging.h"
#include "server/replication.h"

namespace kvrdma::server {

using cluster::kNoNode;
using cluster::kSlots;
using Steady = std::chrono::steady_clock;

namespace {

// A pass that copies keys while clients keep writing may find new ones each time; after this
// many the final pass (writes blocked) takes the rest.
constexpr int kMaxPasses = 8;
// Each peer call, retries included (the peer may need a moment to learn the map).
constexpr auto kPeerCallTime = std::chrono::seconds(5);

}  // namespace

SlotMover::SlotMover(ServerCore& core, uint32_t self, std::function<Status(uint64_t)> write_handoff)
    : core_(core), self_(self), write_handoff_(std::move(write_handoff)) {
  loop_ = std::make_unique<RoundLoop>([this] { return round(*core_.cluster->map()); });
}

SlotMover::~SlotMover() { stop(); }

void SlotMover::notify() { loop_->notify(); }

void SlotMover::reset_handoff() {
  {
    std::lock_guard lock(mu_);
    handoff_written_ = 0;
  }
  loop_->notify();
}

void SlotMover::stop() {
  loop_->stop();
  std::map<uint32_t, std::shared_ptr<PeerSession>> closing;  // Goodbyes outside the lock
  std::lock_guard lock(sessions_mu_);
  closing.swap(sessions_);
}

bool SlotMover::stopping() const { return loop_->stopping(); }

SlotMover::Outcome SlotMover::round(const cluster::SlotMap& m) {
  if (!core_.cluster->serving() || m.owner.empty()) return Outcome::kIdle;
  std::vector<std::shared_ptr<PeerSession>> gone;  // closed (Goodbye) outside the lock
  {
    std::lock_guard lock(sessions_mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (m.node(it->first) == nullptr) {
        gone.push_back(std::move(it->second));
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  gone.clear();
  std::map<uint32_t, std::vector<bool>> pending;  // destination -> slots not yet handed off
  bool moving_out = false;
  for (uint32_t s = 0; s < kSlots; ++s) {
    const uint32_t next = m.next_owner_of(s);
    if (m.owner_of(s) != self_ || next == kNoNode) continue;
    moving_out = true;
    if (core_.cluster->handed_off(s)) continue;
    auto& slots = pending[next];
    if (slots.empty()) slots.assign(kSlots, false);
    slots[s] = true;
  }
  if (pending.empty()) {
    {
      std::lock_guard lock(mu_);
      if (!moving_out || handoff_written_ == m.epoch) return Outcome::kIdle;
    }
    Status s = write_handoff_(m.epoch);
    if (!s.is_ok()) {
      KVRDMA_LOG_WARN("cannot record the hand-off of map epoch {}: {}; retrying", m.epoch,
                      s.to_string());
      return Outcome::kRetry;
    }
    std::lock_guard lock(mu_);
    handoff_written_ = m.epoch;
    return Outcome::kIdle;
  }
  for (auto& [dest, slots] : pending) {
    Status s = move_to(m, dest, slots);
    if (!s.is_ok()) {
      if (!stopping()) {
        KVRDMA_LOG_WARN("moving slots to node {} stopped: {}; retrying", dest, s.to_string());
      }
      return Outcome::kRetry;
    }
  }
  return Outcome::kProgress;  // the next round writes the hand-off
}

Status SlotMover::move_to(const cluster::SlotMap& m, uint32_t dest, std::vector<bool>& slots) {
  const cluster::NodeInfo* node = m.node(dest);
  if (node == nullptr) {
    return Status(Code::kInternal, fmt::format("map epoch {} moves slots to node {}, which it "
                                               "does not list",
                                               m.epoch, dest));
  }
  const size_t count = std::count(slots.begin(), slots.end(), true);
  auto peer = session(*node);
  if (!peer) return peer.status();
  KVRDMA_LOG_INFO("moving {} slots to node {} at {} (map epoch {})", count, dest, node->address,
                  m.epoch);
  uint64_t moved = 0;
  for (int p = 0; p < kMaxPasses; ++p) {
    auto r = pass(**peer, slots, m.epoch);
    if (!r) return r.status();
    moved += r->moved;
    if (r->seen == 0) break;
  }
  std::vector<uint32_t> handed;
  {
    // Writes wait here briefly, so none lands in these slots after the last pass.
    std::unique_lock gate(core_.cluster->write_gate());
    auto now_map = core_.cluster->map();
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (!slots[s]) continue;
      if (now_map->owner_of(s) != self_ || now_map->next_owner_of(s) != dest) {
        slots[s] = false;  // the move was cancelled meanwhile: the slot stays here
      } else {
        handed.push_back(s);
      }
    }
    auto r = pass(**peer, slots, now_map->epoch);
    if (!r) return r.status();
    moved += r->moved;
    core_.cluster->mark_handed_off(handed);
  }
  core_.changes.bump();
  KVRDMA_LOG_INFO("moved {} keys of {} slots to node {} at {}", moved, handed.size(), dest,
                  node->address);
  return Status();
}

Result<SlotMover::PassResult> SlotMover::pass(PeerSession& to, const std::vector<bool>& slots,
                                              uint64_t epoch) {
  PassResult out;
  auto keys =
      core_.store->keys_where([&](std::string_view k) { return slots[cluster::slot_of(k)]; });
  out.seen = keys.size();
  for (const std::string& key : keys) {
    if (stopping() || !core_.cluster->serving()) {
      return Status(Code::kUnavailable, "the node is stopping or lost its lease");
    }
    auto ref = core_.store->get(key);
    if (!ref) continue;  // deleted or expired since it was listed
    Status s = to.put(key, *ref, core_.store->ttl_left(*ref), epoch, Steady::now() + kPeerCallTime);
    if (!s.is_ok()) return s;
    if (core_.store->erase_if_same(key, *ref)) {
      // Its version goes too: the new owner knows none for it, and if this node becomes one of
      // its replicas, the fill (at the lowest version) must bring the value back.
      if (core_.replication) core_.replication->versions().forget(key);
      ++out.moved;
      core_.counters.keys_moved_out.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    // Changed here meanwhile: an overwrite goes again in the next pass; a delete must reach the
    // peer too (the client's DELETE may have been forwarded before our copy landed).
    *ref = store::ValueRef();
    if (!core_.store->get(key).is_ok()) {
      KVRDMA_RETURN_IF_ERROR(to.erase(key, epoch, Steady::now() + kPeerCallTime));
    }
  }
  return out;
}

Result<std::shared_ptr<PeerSession>> SlotMover::session(const cluster::NodeInfo& node) {
  std::lock_guard lock(sessions_mu_);
  auto it = sessions_.find(node.id);
  if (it != sessions_.end() && it->second->peer().address == node.address) return it->second;
  auto opened = PeerSession::open(core_, self_, node, Steady::now() + kPeerCallTime);
  if (!opened) return opened.status();
  std::shared_ptr<PeerSession> s = std::move(*opened);
  sessions_[node.id] = s;
  return s;
}

Status SlotMover::forward_delete(std::string_view key, const v1::WrongOwner& to,
                                 std::chrono::steady_clock::time_point deadline) {
  cluster::NodeInfo node;
  node.id = to.owner_id();
  node.address = to.owner_address();
  auto peer = session(node);
  if (!peer) return peer.status();
  return (*peer)->erase(key, to.epoch(), deadline);
}

}  // namespace kvrdma::server
