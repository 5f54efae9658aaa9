#include "cluster/slot_map.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <set>

namespace kvrdma::cluster {
namespace {

constexpr std::array<uint16_t, 256> make_crc16_table() {
  std::array<uint16_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int b = 0; b < 8; ++b) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
    t[i] = crc;
  }
  return t;
}
constexpr auto kCrc16 = make_crc16_table();

uint16_t crc16(std::string_view bytes) {
  uint16_t crc = 0;
  for (unsigned char c : bytes) {
    crc = static_cast<uint16_t>((crc << 8) ^ kCrc16[((crc >> 8) ^ c) & 0xff]);
  }
  return crc;
}

// Owners travel as node id + 1 so that 0 (the proto default) means "none".
uint32_t wire_id(uint32_t id) { return id == kNoNode ? 0 : id + 1; }
uint32_t local_id(uint32_t wire) { return wire == 0 ? kNoNode : wire - 1; }

}  // namespace

uint32_t slot_of(std::string_view key) {
  if (size_t open = key.find('{'); open != std::string_view::npos) {
    if (size_t close = key.find('}', open + 1);
        close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return crc16(key) % kSlots;
}

const NodeInfo* SlotMap::node(uint32_t id) const {
  auto it = std::lower_bound(nodes.begin(), nodes.end(), id,
                             [](const NodeInfo& n, uint32_t v) { return n.id < v; });
  return it != nodes.end() && it->id == id ? &*it : nullptr;
}

bool SlotMap::moving() const {
  return std::any_of(next_owner.begin(), next_owner.end(), [](uint32_t n) { return n != kNoNode; });
}

size_t SlotMap::slots_of(uint32_t node_id) const {
  return static_cast<size_t>(std::count(owner.begin(), owner.end(), node_id));
}

int SlotMap::replica_seat(uint32_t slot, uint32_t node) const {
  if (replica.empty() || node == kNoNode) return -1;
  for (uint32_t i = 0; i < seats(); ++i) {
    if (replica[size_t(slot) * seats() + i] == node) return static_cast<int>(i);
  }
  return -1;
}

bool SlotMap::serves_reads(uint32_t slot, uint32_t node) const {
  if (owner_of(slot) == node) return true;
  int seat = replica_seat(slot, node);
  return seat >= 0 && replica_ready_of(slot, static_cast<uint32_t>(seat));
}

void to_proto(const SlotMap& map, v1::ClusterMap* out) {
  out->Clear();
  out->set_cluster(map.cluster);
  out->set_epoch(map.epoch);
  out->set_controller(wire_id(map.controller));
  for (const NodeInfo& n : map.nodes) {
    auto* p = out->add_nodes();
    p->set_node_id(n.id);
    p->set_address(n.address);
    p->set_state(n.state);
    p->set_transport_kind(n.transport_kind);
  }
  out->mutable_owner()->Reserve(static_cast<int>(map.owner.size()));
  for (uint32_t o : map.owner) out->add_owner(wire_id(o));
  if (map.moving()) {
    out->mutable_next_owner()->Reserve(static_cast<int>(map.next_owner.size()));
    for (uint32_t o : map.next_owner) out->add_next_owner(wire_id(o));
  }
  out->set_replicas(map.replicas);
  if (map.has_replicas()) {
    out->mutable_replica()->Reserve(static_cast<int>(map.replica.size()));
    for (uint32_t r : map.replica) out->add_replica(wire_id(r));
    out->set_replica_ready(std::string(map.replica_ready.begin(), map.replica_ready.end()));
  }
}

Result<SlotMap> from_proto(const v1::ClusterMap& in) {
  SlotMap m;
  m.cluster = in.cluster();
  m.epoch = in.epoch();
  m.controller = local_id(in.controller());
  std::set<uint32_t> ids;
  for (const auto& p : in.nodes()) {
    if (p.node_id() == kNoNode || !ids.insert(p.node_id()).second) {
      return Status(Code::kInvalidArgument,
                    fmt::format("cluster map epoch {}: node id {} is reserved or listed twice",
                                in.epoch(), p.node_id()));
    }
    m.nodes.push_back(NodeInfo{p.node_id(), p.address(), p.state(), p.transport_kind()});
  }
  std::sort(m.nodes.begin(), m.nodes.end(),
            [](const NodeInfo& a, const NodeInfo& b) { return a.id < b.id; });
  auto slots = [&](const auto& field, std::vector<uint32_t>& to, const char* what) -> Status {
    if (field.empty()) return Status();
    if (static_cast<uint32_t>(field.size()) != kSlots) {
      return Status(Code::kInvalidArgument,
                    fmt::format("cluster map epoch {}: {} has {} slots, not {}", in.epoch(), what,
                                field.size(), kSlots));
    }
    to.reserve(kSlots);
    for (uint32_t w : field) {
      uint32_t id = local_id(w);
      // Owners may name a node whose registration is gone (it died): the controller moves its
      // slots, and a client learns from the next map. So only the id range is checked here.
      to.push_back(id);
    }
    return Status();
  };
  KVRDMA_RETURN_IF_ERROR(slots(in.owner(), m.owner, "owner"));
  KVRDMA_RETURN_IF_ERROR(slots(in.next_owner(), m.next_owner, "next_owner"));
  m.replicas = std::max<uint32_t>(in.replicas(), 1);
  if (m.replicas > kMaxReplicas) {
    return Status(Code::kInvalidArgument, fmt::format("cluster map epoch {}: {} replicas, at most "
                                                      "{}",
                                                      in.epoch(), m.replicas, kMaxReplicas));
  }
  if (in.replica_size() > 0) {
    const size_t want = size_t(kSlots) * m.seats();
    if (static_cast<size_t>(in.replica_size()) != want || in.replica_ready().size() != want) {
      return Status(Code::kInvalidArgument,
                    fmt::format("cluster map epoch {}: {} replica entries and {} ready flags, "
                                "not {} ({} replicas per slot)",
                                in.epoch(), in.replica_size(), in.replica_ready().size(), want,
                                m.seats()));
    }
    m.replica.reserve(want);
    for (uint32_t w : in.replica()) m.replica.push_back(local_id(w));
    m.replica_ready.assign(in.replica_ready().begin(), in.replica_ready().end());
  }
  if (m.epoch != 0 && m.owner.empty()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("cluster map epoch {} has no slot owners", in.epoch()));
  }
  return m;
}

}  // namespace kvrdma::cluster
