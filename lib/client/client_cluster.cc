// Client::Impl's view of the cluster: stats of the first node, and the map with every node's
// counters.
#include <fmt/format.h>

#include <algorithm>

#include "client/client_impl.h"

namespace kvrdma {

using client::NodeSession;

namespace {

ServerStats to_stats(const v1::StatsReply& r) {
  ServerStats o;
  o.node_id = r.node_id();
  o.transport = r.transport();
  o.keys = r.keys();
  o.sessions = r.sessions();
  o.reservations = r.reservations();
  o.pinned = r.pinned();
  o.pool_bytes = r.pool_bytes();
  o.pool_used_bytes = r.pool_used_bytes();
  o.pool_free_bytes = r.pool_free_bytes();
  o.pool_largest_free_bytes = r.pool_largest_free_bytes();
  o.value_bytes = r.value_bytes();
  o.gets = r.gets();
  o.get_hits = r.get_hits();
  o.get_misses = r.get_misses();
  o.puts = r.puts();
  o.deletes = r.deletes();
  o.evictions = r.evictions();
  o.expirations = r.expirations();
  o.bytes_inline_sent = r.bytes_inline_sent();
  o.bytes_transport_written = r.bytes_transport_written();
  o.bytes_inline_received = r.bytes_inline_received();
  o.bytes_put_committed = r.bytes_put_committed();
  o.reservations_expired = r.reservations_expired();
  o.sessions_expired = r.sessions_expired();
  o.version = r.version();
  o.cluster = r.cluster();
  o.map_epoch = r.map_epoch();
  o.slots = r.slots();
  o.keys_moved_out = r.keys_moved_out();
  o.keys_moved_in = r.keys_moved_in();
  return o;
}

}  // namespace

Result<ServerStats> Client::Impl::stats(uint64_t changed_since, std::chrono::milliseconds wait) {
  wait = std::clamp(wait, std::chrono::milliseconds(0), std::chrono::milliseconds(10000));
  auto r = home_->stats(changed_since, wait);
  if (!r) return r.status();
  return to_stats(*r);
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
    Result<v1::StatsReply> st = s ? (*s)->stats(0, std::chrono::milliseconds(0))
                                  : Result<v1::StatsReply>(s.status());
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
