// ClusterNode's lease (cluster_node.h): the keepalive thread, and what happens when the lease
// is found gone: registering again when the map has not moved on, else fencing the node (it
// stops serving and drops its values) until the cluster has reassigned its slots.
#include <fmt/format.h>

#include <algorithm>

#include "common/logging.h"
#include "server/cluster_node.h"

namespace kvrdma::server {

using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

void ClusterNode::keepalive_loop() {
  const milliseconds period = std::max(milliseconds(20), lease_ttl_ / 3);
  // While etcd is unreachable, retry often: when it comes back, every node must renew (or find
  // its lease expired and register again) well within a new controller's grace period.
  const milliseconds retry = std::min(period, milliseconds(200));
  milliseconds wait = period;
  while (!pause(wait)) {
    wait = period;
    cluster::LeaseId lease = 0;
    bool fenced = false;
    {
      std::lock_guard lock(mu_);
      if (left_) return;
      lease = lease_;
      fenced = fenced_;
    }
    if (fenced) {
      if (!try_register_again()) wait = retry;
      continue;
    }
    const Steady::time_point sent = Steady::now();
    Status s = meta_->keep_alive(lease);
    if (s.is_ok()) core_.cluster->set_lease_until(sent + lease_ttl_);
    if (s.code() == Code::kNotFound) {
      if (!resume_after_expiry()) fence();
      continue;
    }
    std::lock_guard lock(mu_);
    if (s.is_ok()) {
      if (etcd_down_logged_) KVRDMA_LOG_INFO("{} reachable again", meta_->describe());
      etcd_down_logged_ = false;
    } else {
      wait = retry;
      if (!etcd_down_logged_) {
        etcd_down_logged_ = true;
        KVRDMA_LOG_WARN(
            "cannot keep node {}'s lease alive: {}; serving on map epoch {} and "
            "retrying every {} ms",
            self_, s.to_string(), core_.cluster->map()->epoch, retry.count());
      }
    }
  }
}

bool ClusterNode::resume_after_expiry() {
  // etcd expires leases that ran out while it was unreachable (or paused) as soon as it is back.
  // If the controller has not acted on its absence, nobody else was given its slots: its values are
  // still the only copy and the latest, so it registers again and keeps serving them. A new
  // controller waits a grace period before it reassigns a missing node's slots (on_state), so
  // the nodes of a cluster that lost etcd for a while all get back in time.
  const std::shared_ptr<const cluster::SlotMap> serving = core_.cluster->map();
  auto r = meta_->range(key("map"));
  if (!r || r->entries.empty()) return false;
  v1::ClusterMap wire;
  if (!wire.ParseFromString(r->entries.front().value)) return false;
  // The controller has not acted on this node's disappearance: the map still lists it and still
  // gives it every slot it owns in the map it serves by (a map that acted would drop it from the
  // node list and hand its slots on). The epoch alone is not the test: a node joining just as
  // etcd came back moves the map on without touching this node's slots.
  auto current = cluster::from_proto(wire);
  if (!current || current->node(self_) == nullptr || serving->node(self_) == nullptr) {
    return false;
  }
  for (uint32_t slot = 0; slot < cluster::kSlots; ++slot) {
    if (serving->owner_of(slot) == self_ && current->owner_of(slot) != self_) return false;
  }
  const uint64_t epoch = current->epoch;
  if (Status s = register_node(milliseconds(0)); !s.is_ok()) return false;
  mover_->reset_handoff();
  mover_->notify();
  // filled/<id> went with the old lease: written again at the next round (the fills hold).
  if (filler_) filler_->forget_written();
  KVRDMA_LOG_WARN(
      "node {}'s lease expired while {} was unreachable; the map (epoch {}) still gives "
      "it its slots, so it registered again and keeps serving its values",
      self_, meta_->describe(), epoch);
  return true;
}

void ClusterNode::fence() {
  {
    std::lock_guard lock(mu_);
    if (stop_ || left_ || fenced_) return;
    fenced_ = true;
    fenced_at_ = Steady::now();
    controller_ = false;
  }
  size_t dropped = 0;
  {
    // No write may land between the last check and the drop.
    std::unique_lock gate(core_.cluster->write_gate());
    core_.cluster->set_serving(false);
    for (const std::string& k : core_.store->keys_where([](std::string_view) { return true; })) {
      dropped += core_.store->erase(k);
    }
    if (core_.replication) core_.replication->versions().clear();
  }
  if (filler_) filler_->reset();
  core_.changes.bump();
  mover_->notify();
  KVRDMA_LOG_ERROR(
      "node {} lost its lease in cluster '{}' (declared dead): stopped serving and "
      "dropped {} values; it registers again as a new node once the cluster has "
      "reassigned its slots",
      self_, core_.options.cluster, dropped);
}

bool ClusterNode::try_register_again() {
  Steady::time_point since;
  {
    std::lock_guard lock(mu_);
    since = fenced_at_;
  }
  // Registering before the controller reassigned the slots would keep them here, empty; wait
  // for a map without this node (bounded: a lone node has no controller to publish one).
  auto m = core_.cluster->map();
  const bool forgotten = m->node(self_) == nullptr && m->slots_of(self_) == 0;
  if (!forgotten && Steady::now() < since + 3 * lease_ttl_) return false;
  Status s = register_node(milliseconds(0));
  if (!s.is_ok()) {
    if (reregister_failures_++ % 30 == 0) {  // every ~10 s while it lasts, not every tick
      KVRDMA_LOG_WARN("node {} cannot register again yet: {}; retrying", self_, s.to_string());
    }
    return false;
  }
  reregister_failures_ = 0;
  {
    std::lock_guard lock(mu_);
    fenced_ = false;
  }
  mover_->reset_handoff();
  if (filler_) filler_->reset();
  core_.cluster->set_serving(true);
  KVRDMA_LOG_INFO("node {} registered again in cluster '{}' as a new node", self_,
                  core_.options.cluster);
  return true;
}

}  // namespace kvrdma::server
