// The cluster's slot map: keys hash to kSlots slots; each slot has one owner node and, while it
// moves, a next owner. Lives in etcd (written by the controller only, by compare-and-swap) and
// in every node and client (as learnt from any node). Plain values; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kv_cache.pb.h"
#include "kvrdma/status.h"

namespace kvrdma::cluster {

inline constexpr uint32_t kSlots = 16384;
inline constexpr uint32_t kNoNode = UINT32_MAX;
inline constexpr uint32_t kMaxReplicas = 5;  // copies per slot, the owner included

// CRC16 (XMODEM polynomial 0x1021) of the key mod kSlots. When the key holds a non-empty
// "{tag}" (the first '{' and the next '}' after it), only the tag is hashed, so keys that share
// a tag share a slot (and an owner).
uint32_t slot_of(std::string_view key);

struct NodeInfo {
  uint32_t id = kNoNode;
  std::string address;           // what clients dial
  std::string state = "active";  // "active" or "leaving"
  std::string transport_kind;
  bool operator==(const NodeInfo&) const = default;
};

struct SlotMap {
  std::string cluster;
  uint64_t epoch = 0;  // 0: no map yet (or not in cluster mode)
  uint32_t controller = kNoNode;
  std::vector<NodeInfo> nodes;       // sorted by id, ids unique
  std::vector<uint32_t> owner;       // kSlots entries (kNoNode: unassigned), or empty when epoch 0
  std::vector<uint32_t> next_owner;  // kSlots entries (kNoNode: not moving), or empty
  // Replicas (docs/cluster.md, "Replicas"): copies per slot including the owner; 1: none.
  uint32_t replicas = 1;
  // (replicas - 1) entries per slot, slot-major (kNoNode: none), or empty when replicas is 1 or
  // no slot has one; `replica_ready` has the same shape: the replica is filled and serves reads.
  std::vector<uint32_t> replica;
  std::vector<uint8_t> replica_ready;

  const NodeInfo* node(uint32_t id) const;  // nullptr when the map does not name it
  uint32_t owner_of(uint32_t slot) const { return owner.empty() ? kNoNode : owner[slot]; }
  uint32_t next_owner_of(uint32_t slot) const {
    return next_owner.empty() ? kNoNode : next_owner[slot];
  }
  bool moving() const;                      // some slot has a next owner
  size_t slots_of(uint32_t node_id) const;  // slots owned
  // Replica seats per slot (replicas - 1).
  uint32_t seats() const { return replicas > 1 ? replicas - 1 : 0; }
  bool has_replicas() const { return !replica.empty(); }
  // The replica in seat `i` of `slot` (kNoNode when empty), and whether it is filled.
  uint32_t replica_of(uint32_t slot, uint32_t i) const {
    return replica.empty() ? kNoNode : replica[size_t(slot) * seats() + i];
  }
  bool replica_ready_of(uint32_t slot, uint32_t i) const {
    return !replica_ready.empty() && replica_ready[size_t(slot) * seats() + i] != 0;
  }
  // The seat `node` holds in `slot`, or -1 when it is not a replica of it.
  int replica_seat(uint32_t slot, uint32_t node) const;
  // `node` is a filled replica of `slot` (so it may serve reads of it).
  bool serves_reads(uint32_t slot, uint32_t node) const;
};

void to_proto(const SlotMap& map, v1::ClusterMap* out);
// INVALID_ARGUMENT when the map is malformed (wrong slot count, no owners at a non-zero epoch,
// duplicate or reserved node ids). An owner the node list lacks is allowed: a dead node stays
// named until the controller moves its slots.
Result<SlotMap> from_proto(const v1::ClusterMap& in);

}  // namespace kvrdma::cluster
