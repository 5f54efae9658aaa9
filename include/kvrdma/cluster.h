// Cluster mode as a client sees it (docs/cluster.md): where a key's value lives, and the nodes of
// the cluster with their share of the slots and their counters. Plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvrdma {

// Where the value of a key sits: the owner node's pool region (as its transport names it) and the
// value's place in it. Answered by the key's owner (Client::locate).
struct ValueLocation {
  uint32_t node_id = 0;
  std::string node_address;
  std::string region_descriptor;  // opaque bytes, as the owner's transport produced them
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t epoch = 0;  // the map epoch the owner answered by (0 outside cluster mode)
  uint32_t slot = 0;
};

// One node of the cluster as the map names it, with counters from its Stats.
struct ClusterNodeStatus {
  uint32_t id = 0;
  std::string address;
  std::string state;       // "active" or "leaving"
  uint64_t slots = 0;      // slots the map gives it
  bool reachable = false;  // false: its Stats did not answer (`error` says why); counters are 0
  std::string error;
  uint64_t keys = 0;
  uint64_t value_bytes = 0;
  uint64_t pool_used_bytes = 0;
  uint64_t pool_bytes = 0;
};

struct ClusterInfo {
  std::string cluster;  // empty outside cluster mode
  uint64_t epoch = 0;   // 0: not in cluster mode (one node, serving every key)
  bool has_controller = false;
  uint32_t controller = 0;    // node id of the controller that wrote the map
  uint64_t moving_slots = 0;  // slots whose values are moving to a new owner (join or leave)
  uint32_t replicas = 1;      // copies per slot, the primary included (docs/cluster.md "Replicas")
  // Replicas still missing or filling, over all slots: 0 once every slot has replicas - 1
  // filled replicas (or one on every other active node, when there are fewer).
  uint64_t replicas_missing = 0;
  std::vector<ClusterNodeStatus> nodes;  // by node id
};

}  // namespace kvrdma
