// Client::Impl's view of the cluster: stats of the first node, and the map with every node's
// counters.
#include <fmt/format.h>

#include <algorithm>

#include "client/client_impl.h"
#include "rpc/stats_wire.h"

namespace kvrdma {

using client::NodeSession;

Result<ServerStats> Client::Impl::stats(uint64_t changed_since, std::chrono::milliseconds wait) {
  wait = std::clamp(wait, std::chrono::milliseconds(0), std::chrono::milliseconds(10000));
  auto r = home_->stats(changed_since, wait);
  if (!r) return r.status();
  return rpc::from_reply(*r);
}

Result<ClusterInfo> Client::Impl::cluster() {
  std::shared_ptr<const cluster::SlotMap> map = current_map();
  if (cluster_) map = refresh_map({}, map->epoch + 1);  // the newest any node has
  ClusterInfo info;
  info.cluster = map->cluster;
  info.epoch = map->epoch;
  info.has_controller = map->controller != cluster::kNoNode;
  info.controller = info.has_controller ? map->controller : 0;
  for (uint32_t next : map->next_owner) {
    if (next != cluster::kNoNode) ++info.moving_slots;
  }
  info.replicas = map->replicas;
  // A slot can have at most one replica per other active node.
  uint32_t active = 0;
  for (const auto& n : map->nodes) active += n.state == "active";
  const uint32_t possible = std::min<uint32_t>(map->seats(), active > 0 ? active - 1 : 0);
  for (uint32_t slot = 0; slot < map->owner.size() && possible > 0; ++slot) {
    uint32_t ready = 0;
    for (uint32_t i = 0; i < map->seats(); ++i) ready += map->replica_ready_of(slot, i);
    if (ready < possible) info.replicas_missing += possible - ready;
  }
  std::vector<std::pair<uint32_t, std::string>> nodes;
  for (const auto& n : map->nodes) nodes.emplace_back(n.id, n.address);
  if (!cluster_ && nodes.empty()) {
    // A server older than cluster mode: itself, alone.
    nodes.emplace_back(home_->node_id(0), home_->address());
  }
  for (const auto& [id, address] : nodes) {
    ClusterNodeStatus n;
    n.id = id;
    n.address = address;
    const cluster::NodeInfo* in_map = map->node(id);
    n.state = in_map ? in_map->state : "active";
    n.slots = cluster_ ? map->slots_of(id) : cluster::kSlots;
    // Stats needs no session: a probe channel does.
    Result<std::shared_ptr<NodeSession>> s = home_;
    if (cluster_ || home_->node_id(id) != id) s = session_for(id, address);
    Result<v1::StatsReply> st =
        s ? (*s)->stats(0, std::chrono::milliseconds(0)) : Result<v1::StatsReply>(s.status());
    if (st) {
      n.reachable = true;
      n.keys = st->keys();
      n.value_bytes = st->value_bytes();
      n.pool_used_bytes = st->pool_used_bytes();
      n.pool_bytes = st->pool_bytes();
    } else {
      n.error = st.status().message();
    }
    info.nodes.push_back(std::move(n));
  }
  return info;
}

}  // namespace kvrdma
