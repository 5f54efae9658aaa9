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

// CRC16 (XMODEM polynomial 0x1021) of the key mod kSlots. When the key holds a non-empty
// "{tag}" (the first '{' and the next '}' after it), only the tag is hashed, so keys that share
// a tag share a slot (and an owner).
uint32_t slot_of(std::string_view key);

struct NodeInfo {
  uint32_t id = kNoNode;
  std::string address;         // what clients dial
  std::string state = "active";  // "active" or "leaving"
  std::string transport_kind;
  bool operator==(const NodeInfo&) const = default;
};

struct SlotMap {
  std::string cluster;
  uint64_t epoch = 0;            // 0: no map yet (or not in cluster mode)
  uint32_t controller = kNoNode;
  std::vector<NodeInfo> nodes;   // sorted by id, ids unique
  std::vector<uint32_t> owner;   // kSlots entries (kNoNode: unassigned), or empty when epoch 0
  std::vector<uint32_t> next_owner;  // kSlots entries (kNoNode: not moving), or empty

  const NodeInfo* node(uint32_t id) const;  // nullptr when the map does not name it
  uint32_t owner_of(uint32_t slot) const { return owner.empty() ? kNoNode : owner[slot]; }
  uint32_t next_owner_of(uint32_t slot) const {
    return next_owner.empty() ? kNoNode : next_owner[slot];
  }
  bool moving() const;                      // some slot has a next owner
  size_t slots_of(uint32_t node_id) const;  // slots owned
};

void to_proto(const SlotMap& map, v1::ClusterMap* out);
// INVALID_ARGUMENT when the map is malformed (wrong slot count, no owners at a non-zero epoch,
// duplicate or reserved node ids). An owner the node list lacks is allowed: a dead node stays
// named until the controller moves its slots.
Result<SlotMap> from_proto(const v1::ClusterMap& in);

}  // namespace kvrdma::cluster
