#include "server/cluster_view.h"

#include <fmt/format.h>

#include "rpc/status_map.h"

namespace kvrdma::server {

using cluster::kNoNode;
using cluster::kSlots;

Status SlotVerdict::refusal() const {
  if (detail.moved()) {
    return rpc::wrong_owner(detail,
                            fmt::format("slot {} is moving to node {} at {}; ask it (map epoch {})",
                                        detail.slot(), detail.owner_id(), detail.owner_address(),
                                        detail.epoch()));
  }
  if (detail.owner_id() == kNoNode) {
    return rpc::wrong_owner(detail, fmt::format("slot {} has no owner in map epoch {} yet; retry "
                                                "once the cluster has assigned it",
                                                detail.slot(), detail.epoch()));
  }
  return rpc::wrong_owner(detail, fmt::format("this node does not serve slot {}: node {} at {} "
                                              "owns it in map epoch {}; refresh the map",
                                              detail.slot(), detail.owner_id(),
                                              detail.owner_address(), detail.epoch()));
}

std::shared_ptr<const cluster::SlotMap> ClusterView::map() const {
  std::lock_guard lock(mu_);
  if (!map_) return std::make_shared<const cluster::SlotMap>();
  return map_;
}

bool ClusterView::set_map(std::shared_ptr<const cluster::SlotMap> map) {
  std::lock_guard lock(mu_);
  if (map_ && map->epoch <= map_->epoch) return false;
  if (!handed_off_.empty()) {
    for (uint32_t s = 0; s < kSlots; ++s) {
      // Kept only while the slot still moves out of this node to the same next owner: a
      // finished or cancelled move, or one redirected elsewhere, starts afresh.
      const uint32_t next = map->next_owner_of(s);
      if (handed_off_[s] && (map->owner_of(s) != self_ || next == kNoNode ||
                             (map_ && next != map_->next_owner_of(s)))) {
        handed_off_[s] = false;
      }
    }
  }
  map_ = std::move(map);
  return true;
}

void ClusterView::mark_handed_off(std::span<const uint32_t> slots) {
  std::lock_guard lock(mu_);
  if (handed_off_.empty()) handed_off_.assign(kSlots, false);
  for (uint32_t s : slots) handed_off_[s] = true;
}

bool ClusterView::handed_off(uint32_t slot) const {
  std::lock_guard lock(mu_);
  return !handed_off_.empty() && handed_off_[slot];
}

void ClusterView::set_serving(bool serving) {
  std::lock_guard lock(mu_);
  serving_ = serving;
}

bool ClusterView::serving() const {
  std::lock_guard lock(mu_);
  if (!serving_) return false;
  // With replicas another node takes this one's slots once its lease expires: stop at once by
  // our own clock rather than when the keepalive finds out.
  return !map_ || map_->replicas <= 1 || std::chrono::steady_clock::now() < lease_until_;
}

void ClusterView::set_lease_until(std::chrono::steady_clock::time_point until) {
  std::lock_guard lock(mu_);
  lease_until_ = until;
}

v1::WrongOwner ClusterView::detail_for(const cluster::SlotMap& m, uint32_t slot, uint32_t node,
                                       bool moved) const {
  v1::WrongOwner w;
  w.set_slot(slot);
  w.set_owner_id(node);
  if (const cluster::NodeInfo* n = m.node(node)) w.set_owner_address(n->address);
  w.set_epoch(m.epoch);
  w.set_moved(moved);
  return w;
}

SlotVerdict ClusterView::check(uint32_t slot, SlotOp op, bool from_peer) const {
  SlotVerdict v;
  if (!enabled_) return v;
  std::shared_ptr<const cluster::SlotMap> m;
  bool gone = false;
  {
    std::lock_guard lock(mu_);
    m = map_;
    gone = !handed_off_.empty() && handed_off_[slot];
  }
  if (!m || m->owner.empty()) {
    v.kind = SlotVerdict::kRefuse;
    cluster::SlotMap empty;
    v.detail = detail_for(m ? *m : empty, slot, kNoNode, false);
    return v;
  }
  const uint32_t owner = m->owner_of(slot), next = m->next_owner_of(slot);
  if (next == self_) return v;  // importing: moves from the owner, and redirected clients
  if (owner == self_ && next == kNoNode) return v;
  if (owner == self_) {
    v.detail = detail_for(*m, slot, next, true);
    v.kind = gone ? SlotVerdict::kRefuse : SlotVerdict::kServeMovingOut;
    (void)op;
    return v;
  }
  (void)from_peer;
  if (op == SlotOp::kRead && m->serves_reads(slot, self_)) {
    // A filled replica (docs/cluster.md "Replicas"): serves what it holds; a miss is a `moved`
    // redirect to the primary, which may hold a value this replica has not (evicted here).
    v.detail = detail_for(*m, slot, owner, true);
    v.kind = SlotVerdict::kServeMovingOut;
    return v;
  }
  v.kind = SlotVerdict::kRefuse;
  v.detail = detail_for(*m, slot, owner, false);
  return v;
}

}  // namespace kvrdma::server
