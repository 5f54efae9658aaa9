#include "server/cluster_node.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "cluster/placement.h"
#include "common/logging.h"
#include "server/slot_drop.h"

namespace kvrdma::server {

using cluster::kNoNode;
using cluster::kSlots;
using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

template <typename T>
bool parse_number(std::string_view text, T& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

struct MapCounts {
  size_t owned = 0, moving_out = 0, moving_in = 0;
};

MapCounts counts_for(const cluster::SlotMap& m, uint32_t self) {
  MapCounts c;
  for (uint32_t s = 0; s < kSlots && !m.owner.empty(); ++s) {
    const uint32_t owner = m.owner_of(s), next = m.next_owner_of(s);
    if (owner == self) ++c.owned;
    if (owner == self && next != kNoNode) ++c.moving_out;
    if (next == self) ++c.moving_in;
  }
  return c;
}

}  // namespace

ClusterNode::ClusterNode(ServerCore& core, std::shared_ptr<cluster::MetaStore> meta, bool owns_meta)
    : core_(core),
      meta_(std::move(meta)),
      owns_meta_(owns_meta),
      self_(core.options.node_id),
      prefix_(fmt::format("/kvrdma/{}/", core.options.cluster)),
      lease_ttl_(milliseconds(std::max<uint64_t>(core.options.node_lease_ms, 1))) {}

Result<std::unique_ptr<ClusterNode>> ClusterNode::start(ServerCore& core,
                                                        std::shared_ptr<cluster::MetaStore> meta,
                                                        bool owns_meta) {
  std::unique_ptr<ClusterNode> node(new ClusterNode(core, std::move(meta), owns_meta));
  // A previous run of this node that crashed holds the registration until its lease runs out
  // (etcd counts whole seconds, and expires a little late).
  auto patience =
      std::chrono::ceil<std::chrono::seconds>(node->lease_ttl_) + std::chrono::seconds(2);
  KVRDMA_RETURN_IF_ERROR(node->register_node(patience));
  KVRDMA_LOG_INFO("registered as node {} of cluster '{}' at {} ({}, lease {} ms)", node->self_,
                  core.options.cluster, core.public_address, node->meta_->describe(),
                  node->lease_ttl_.count());
  ClusterNode* n = node.get();
  node->mover_ = std::make_unique<SlotMover>(core, node->self_, [n](uint64_t epoch) {
    return n->write_handoff(epoch);
  });
  if (core.replication) {
    node->filler_ = std::make_unique<ReplicaFiller>(core, node->self_, [n](uint64_t epoch) {
      return n->write_filled(epoch);
    });
  }
  // Both log at the server's level (start runs under its log::Scope).
  const log::Logger* logger = &log::current();
  node->agent_ = std::thread([n, logger] {
    log::Scope s(logger);
    n->agent_loop();
  });
  node->keepalive_ = std::thread([n, logger] {
    log::Scope s(logger);
    n->keepalive_loop();
  });
  return node;
}

ClusterNode::~ClusterNode() { stop(); }

std::string ClusterNode::registration(std::string_view state) const {
  v1::ClusterNode n;
  n.set_node_id(self_);
  n.set_address(core_.public_address);
  n.set_state(std::string(state));
  n.set_transport_kind(core_.transport->kind());
  return n.SerializeAsString();
}

Status ClusterNode::register_node(milliseconds patience) {
  const auto deadline = Steady::now() + patience;
  const std::string where =
      fmt::format("node {} of cluster '{}' ({})", self_, core_.options.cluster, meta_->describe());
  auto lease = meta_->grant_lease(lease_ttl_);
  if (!lease) return lease.status().with_context("registering " + where);
  std::string state;
  {
    std::lock_guard lock(mu_);
    state = state_;
  }
  for (int attempt = 0;; ++attempt) {
    cluster::MetaEntry existing;
    auto created =
        meta_->create(key(fmt::format("nodes/{}", self_)), registration(state), *lease, &existing);
    if (created && *created) {
      core_.cluster->set_lease_until(Steady::now() + lease_ttl_);
      std::lock_guard lock(mu_);
      lease_ = *lease;
      return Status();
    }
    Status failed;
    if (!created) {
      failed = created.status().with_context("registering " + where);
    } else {
      v1::ClusterNode live;
      (void)live.ParseFromString(existing.value);
      if (live.address() != core_.public_address) {
        failed = Status(Code::kFailedPrecondition,
                        fmt::format("node id {} is already registered in cluster '{}' by a live "
                                    "node at {}; give this node another --node-id, or stop that "
                                    "node first",
                                    self_, core_.options.cluster, live.address()));
      } else if (Steady::now() >= deadline) {
        failed =
            Status(Code::kFailedPrecondition,
                   fmt::format("node id {} is still registered in cluster '{}' at {} (this "
                               "address) after waiting {} ms for an earlier run's lease to "
                               "expire; is another kv-server running with this address?",
                               self_, core_.options.cluster, live.address(), patience.count()));
      } else if (attempt == 0) {
        KVRDMA_LOG_INFO(
            "node id {} is still registered at {} by this node's previous run; "
            "waiting up to {} ms for its lease to expire",
            self_, live.address(), patience.count());
      }
    }
    if (failed.is_ok()) {
      (void)meta_->keep_alive(*lease);
      if (!pause(milliseconds(200))) continue;
      failed = Status(Code::kUnavailable, "stopped while registering " + where);
    }
    (void)meta_->revoke(*lease);
    return failed;
  }
}

bool ClusterNode::pause(milliseconds d) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, d, [this] { return stop_; });
}

void ClusterNode::agent_loop() {
  // Short waits when the store is shared: cancel_waits() would wake every agent of it.
  const milliseconds slice =
      owns_meta_ ? std::min(milliseconds(1000), lease_ttl_ / 3) : milliseconds(100);
  int64_t seen = -1;  // the revision last looked at; -1: look now
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
    }
    if (seen < 0) {
      auto r = meta_->range(prefix_);
      if (!r) {
        if (pause(slice)) return;  // unreachable: keep serving on the last map
        continue;
      }
      // A controller that deferred a decision (takeover grace) looks again after the next
      // slice even if nothing changes; otherwise only a change makes it read the prefix again
      // (a whole-prefix read per slice per node grew as N^2 in bytes across a large cluster).
      seen = on_state(*r) ? -1 : r->revision;
      if (seen < 0) {
        if (pause(slice)) return;
        continue;
      }
    }
    auto w = meta_->wait_for_change(prefix_, seen, slice);
    if (!w) {
      if (pause(slice)) return;
      seen = -1;
    } else if (*w != seen) {
      seen = -1;
    }
  }
}

bool ClusterNode::on_state(const cluster::MetaRange& range) {
  std::vector<cluster::NodeInfo> registered;
  std::map<uint32_t, uint64_t> handed_off, filled;
  const cluster::MetaEntry* map_entry = nullptr;
  const cluster::MetaEntry* controller = nullptr;
  for (const cluster::MetaEntry& e : range.entries) {
    std::string_view rel = std::string_view(e.key).substr(prefix_.size());
    if (rel == "map") {
      map_entry = &e;
    } else if (rel == "controller") {
      controller = &e;
    } else if (rel.starts_with("nodes/")) {
      v1::ClusterNode n;
      if (!n.ParseFromString(e.value)) continue;
      registered.push_back({n.node_id(), n.address(), n.state(), n.transport_kind()});
    } else if (rel.starts_with("handoff/")) {
      uint32_t id = 0;
      uint64_t epoch = 0;
      if (parse_number(rel.substr(8), id) && parse_number(e.value, epoch)) handed_off[id] = epoch;
    } else if (rel.starts_with("filled/")) {
      uint32_t id = 0;
      uint64_t epoch = 0;
      if (parse_number(rel.substr(7), id) && parse_number(e.value, epoch)) filled[id] = epoch;
    }
  }
  auto current = std::make_shared<cluster::SlotMap>();
  current->cluster = core_.options.cluster;
  if (map_entry != nullptr) {
    v1::ClusterMap wire;
    auto parsed = wire.ParseFromString(map_entry->value)
                      ? cluster::from_proto(wire)
                      : Result<cluster::SlotMap>(Status(Code::kInvalidArgument, "no ClusterMap"));
    if (!parsed) {
      KVRDMA_LOG_ERROR("the map in {} at {}map is unreadable: {}", meta_->describe(), prefix_,
                       parsed.status().to_string());
      return false;
    }
    *current = std::move(*parsed);
  }
  if (current->epoch > 0) install(current);

  cluster::LeaseId lease = 0;
  {
    std::lock_guard lock(mu_);
    if (stop_ || fenced_ || left_) return false;
    lease = lease_;
  }
  const std::string me = std::to_string(self_);
  bool in_charge = false;
  if (controller == nullptr) {
    auto won = meta_->create(key("controller"), me, lease);
    in_charge = won && *won;
    if (in_charge) KVRDMA_LOG_INFO("node {} won the controller election", self_);
  } else {
    in_charge = controller->value == me && (controller->lease == 0 || controller->lease == lease);
  }
  Steady::time_point in_charge_since;
  {
    std::lock_guard lock(mu_);
    if (in_charge && !controller_) controller_since_ = Steady::now();
    controller_ = in_charge;
    in_charge_since = controller_since_;
  }
  if (!in_charge) return false;
  // A controller that has just taken over may be looking at a cluster whose leases all expired
  // at once (etcd was unreachable for longer than a lease): give the nodes a moment to register
  // again before it declares one dead and hands its slots (and so its values) away.
  if (Steady::now() < in_charge_since + takeover_grace() && owner_missing(*current, registered)) {
    return true;  // the agent looks again after a slice
  }
  const uint32_t replicas = static_cast<uint32_t>(core_.options.replicas);
  if (current->epoch > 0 && current->replicas != replicas && !replicas_warned_) {
    replicas_warned_ = true;
    KVRDMA_LOG_WARN(
        "cluster '{}' keeps {} copies per slot (its map says so); this node's "
        "--replicas {} applies only to a new cluster",
        core_.options.cluster, current->replicas, replicas);
  }
  auto next = cluster::next_map(*current, registered, handed_off, self_, filled, replicas);
  if (!next) return false;
  next->cluster = core_.options.cluster;
  v1::ClusterMap wire;
  cluster::to_proto(*next, &wire);
  auto swapped = meta_->compare_and_swap(key("map"), map_entry ? map_entry->mod_revision : 0,
                                         wire.SerializeAsString(), 0);
  if (swapped && *swapped) {
    size_t moving = 0;
    for (uint32_t s = 0; s < kSlots; ++s) moving += next->next_owner_of(s) != kNoNode;
    KVRDMA_LOG_INFO("controller: published map epoch {} ({} nodes, {} slots moving)", next->epoch,
                    next->nodes.size(), moving);
    install(std::make_shared<const cluster::SlotMap>(std::move(*next)));
  }
  // A lost race (another controller's map, or a change meanwhile) shows up as the next change.
  return false;
}

void ClusterNode::install(std::shared_ptr<const cluster::SlotMap> map) {
  const std::shared_ptr<const cluster::SlotMap> before = core_.cluster->map();
  if (map->epoch <= before->epoch) return;
  drop_slots(core_, slots_to_drop(*before, *map, self_, true), map->epoch);
  if (filler_) filler_->map_installed(*before, *map);  // before the map is in force
  if (!core_.cluster->set_map(map)) return;
  drop_slots(core_, slots_to_drop(*before, *map, self_, false), map->epoch);
  MapCounts c = counts_for(*map, self_);
  KVRDMA_LOG_INFO(
      "map epoch {} installed: node {} owns {} slots ({} moving out, {} moving in) "
      "of {} nodes",
      map->epoch, self_, c.owned, c.moving_out, c.moving_in, map->nodes.size());
  core_.changes.bump();
  if (mover_) mover_->notify();
  if (filler_) filler_->notify();
  cv_.notify_all();  // leave() waits for maps
}

bool ClusterNode::owner_missing(const cluster::SlotMap& map,
                                const std::vector<cluster::NodeInfo>& registered) {
  std::vector<bool> live;
  for (const cluster::NodeInfo& n : registered) {
    if (n.id >= live.size()) live.resize(n.id + 1, false);
    live[n.id] = true;
  }
  for (uint32_t o : map.owner) {
    if (o != kNoNode && (o >= live.size() || !live[o])) return true;
  }
  return false;
}

Status ClusterNode::write_handoff(uint64_t epoch) {
  cluster::LeaseId lease = 0;
  {
    std::lock_guard lock(mu_);
    if (fenced_ || stop_) return Status(Code::kUnavailable, "node fenced or stopping");
    lease = lease_;
  }
  KVRDMA_RETURN_IF_ERROR(
      meta_->put(key(fmt::format("handoff/{}", self_)), std::to_string(epoch), lease));
  KVRDMA_LOG_INFO("node {} finished moving out the slots of map epoch {}", self_, epoch);
  return Status();
}

Status ClusterNode::write_filled(uint64_t epoch) {
  cluster::LeaseId lease = 0;
  {
    std::lock_guard lock(mu_);
    if (fenced_ || stop_) return Status(Code::kUnavailable, "node fenced or stopping");
    lease = lease_;
  }
  KVRDMA_RETURN_IF_ERROR(
      meta_->put(key(fmt::format("filled/{}", self_)), std::to_string(epoch), lease));
  KVRDMA_LOG_INFO("node {} filled the replicas of its slots in map epoch {}", self_, epoch);
  return Status();
}

Status ClusterNode::leave(milliseconds timeout) {
  const auto deadline = Steady::now() + timeout;
  cluster::LeaseId lease = 0;
  {
    std::lock_guard lock(mu_);
    if (left_) return Status();
    if (stop_) return Status(Code::kUnavailable, "leave: the node is stopping");
    state_ = "leaving";
    lease = lease_;
  }
  for (;;) {
    Status s = meta_->put(key(fmt::format("nodes/{}", self_)), registration("leaving"), lease);
    if (s.is_ok()) break;
    if (Steady::now() >= deadline || pause(milliseconds(200))) {
      return s.with_context(fmt::format("leave: marking node {} as leaving", self_));
    }
  }
  KVRDMA_LOG_INFO("node {} is leaving cluster '{}': moving its slots to the other nodes", self_,
                  core_.options.cluster);
  std::unique_lock lock(mu_);
  for (;;) {
    auto m = core_.cluster->map();
    MapCounts c = counts_for(*m, self_);
    const cluster::NodeInfo* me = m->node(self_);
    const bool known = me != nullptr && me->state == "leaving";
    const bool others = std::any_of(m->nodes.begin(), m->nodes.end(), [&](const auto& n) {
      return n.id != self_ && n.state == "active";
    });
    if (known && c.owned == 0 && c.moving_in == 0) break;
    if (known && !others) {
      KVRDMA_LOG_WARN(
          "node {} leaves with {} slots: no other active node can take them (their "
          "values are lost)",
          self_, c.owned);
      break;
    }
    if (stop_) return Status(Code::kUnavailable, "leave: the node is stopping");
    if (Steady::now() >= deadline) {
      return Status(Code::kDeadlineExceeded,
                    fmt::format("leave: after {} ms node {} still owns {} slots ({} moving out) "
                                "in map epoch {}; its values there are lost if it stops now",
                                timeout.count(), self_, c.owned, c.moving_out, m->epoch));
    }
    cv_.wait_until(lock, std::min(deadline, Steady::now() + milliseconds(500)));
  }
  left_ = true;
  lease = lease_;
  lock.unlock();
  Status s = meta_->revoke(lease);
  KVRDMA_LOG_INFO("node {} left cluster '{}'", self_, core_.options.cluster);
  return s.is_ok() ? s : s.with_context("leave: revoking the node's lease");
}

void ClusterNode::stop() {
  cluster::LeaseId lease = 0;
  bool left = false;
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
    lease = lease_;
    left = left_;
  }
  cv_.notify_all();
  if (owns_meta_) meta_->cancel_waits();
  if (filler_) filler_->stop();
  if (mover_) mover_->stop();
  if (core_.replication) core_.replication->stop();
  if (agent_.joinable()) agent_.join();
  if (keepalive_.joinable()) keepalive_.join();
  if (!left && lease != 0) (void)meta_->revoke(lease);  // the cluster sees us gone at once
}

cluster::LeaseId ClusterNode::lease() const {
  std::lock_guard lock(mu_);
  return lease_;
}

bool ClusterNode::is_controller() const {
  std::lock_guard lock(mu_);
  return controller_;
}

bool ClusterNode::in_takeover_grace() const {
  std::lock_guard lock(mu_);
  return controller_ && Steady::now() < controller_since_ + takeover_grace();
}

bool ClusterNode::fenced() const {
  std::lock_guard lock(mu_);
  return fenced_;
}

Status ClusterNode::forward_delete(std::string_view key, const v1::WrongOwner& to,
                                   Steady::time_point deadline) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return Status(Code::kUnavailable, "the node is stopping");
  }
  return mover_->forward_delete(key, to, deadline);
}

}  // namespace kvrdma::server
