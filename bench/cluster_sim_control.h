// cluster_sim's control-plane mode: N real kv-server nodes in one process, in cluster mode over
// the mock transport, each with its own etcd client, against one loopback etcd. It measures how
// long the nodes take to register and settle on one balanced map, what they cost etcd at steady
// state, and how long the cluster takes to drop a dead node (one of them the controller).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cluster_sim {

struct ControlPlaneOptions {
  std::vector<uint32_t> nodes = {100};  // one run per size, each on a fresh etcd
  uint64_t lease_ms = 2000;             // --node-lease-ms of every node
  int kills = 3;                        // nodes killed one at a time (one is the controller)
  uint64_t window_ms = 10000;           // steady-state window for the request rate
  std::string etcd_endpoints;           // empty: start a throwaway etcd per run
  bool json = false;
};

// Runs every size in turn and prints a table (or one JSON line per size). Returns the process
// exit code: 0 when every run finished, 1 when one failed or timed out (what broke is printed).
// Every phase is bounded in time; servers and etcd are stopped on every path.
int run_control_plane(const ControlPlaneOptions& options);

}  // namespace cluster_sim
