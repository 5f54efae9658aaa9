// What the cluster-mode integration suites share (cluster_test, replica_test,
// callermem_cluster_test): a throwaway etcd with kv-server nodes run as processes on loopback,
// clients of them, a bounded wait until the map settles, and values that name their key and write
// so a reader can tell a stale or torn one. Failures end the current test through Catch2
// (REQUIRE / FAIL), so everything here runs on the test's main thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "etcd_process.h"
#include "integration/harness.h"
#include "kvrdma/client.h"
#include "kvrdma/cluster.h"

namespace kvrdma::testing {

// How a TestCluster starts its nodes and connects its clients.
struct TestClusterOptions {
  std::string name_prefix = "t";  // the cluster is named <prefix><pid>-<n>: unique per run
  uint64_t lease_ms = 2000;       // --node-lease-ms
  uint64_t memory_mb = 256;       // --memory-mb
  uint64_t replicas = 1;          // --replicas
  // Clients from client():
  uint64_t client_timeout_ms = 5000;
  uint64_t client_buffer_bytes = 64ull << 20;
  ReadFrom read_from = ReadFrom::kPrimary;
};

// One etcd and the kv-server nodes of one cluster, by node id. Nodes get the test transport's
// flags (ServerProcess). The destructor kills what still runs (SIGCONT first, so a stopped node
// dies too): tearing a test's cluster down need not move values around. Not thread-safe: the
// test's main thread owns it.
class TestCluster {
 public:
  // Starts etcd; fails the test when it does not come up.
  explicit TestCluster(TestClusterOptions options = {});
  ~TestCluster();
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  const TestClusterOptions& options() const { return options_; }
  EtcdProcess& etcd() { return *etcd_; }
  // The flags node `id` starts with (without --listen-addr and the transport's flags).
  std::vector<std::string> node_args(uint32_t id) const;
  // Starts node `id` and waits for its ready line (ServerProcess).
  ServerProcess& start(uint32_t id);
  // Starts the nodes `ids` side by side (as a deployment would), then waits for each one's
  // ready line: faster than start() one after the other.
  void start_all(std::initializer_list<uint32_t> ids);
  ServerProcess& node(uint32_t id) { return *nodes_.at(id); }
  // SIGKILLs node `id` (failing the test when that fails) and forgets it.
  void kill(uint32_t id);
  // Forgets node `id` (stopping it when it still runs).
  void forget(uint32_t id) { nodes_.erase(id); }
  // Every running node's address, comma-separated, by node id.
  std::string addresses() const;
  // Options for a client of `addrs` (default: every node) with the options' timeout and buffer,
  // reading from `read_from`, over the test transport.
  ClientOptions client_options(ReadFrom read_from, const std::string& addrs = {}) const;
  // A client with client_options(); fails the test when it cannot connect.
  std::unique_ptr<Client> client(ReadFrom read_from, const std::string& addrs = {}) const;
  std::unique_ptr<Client> client() const { return client(options_.read_from); }

 private:
  static inline int counter_ = 0;
  TestClusterOptions options_;
  std::string name_;
  std::unique_ptr<EtcdProcess> etcd_;
  std::map<uint32_t, std::unique_ptr<ServerProcess>> nodes_;
};

// What wait_settled waits for besides the slots.
enum class Settle { kSlots, kReplicasFilled };

// True when the map names exactly `ids` as the owners of all 16384 slots and none moves; with
// kReplicasFilled, also every replica filled.
bool settled(const ClusterInfo& info, const std::set<uint32_t>& ids, Settle what = Settle::kSlots);

// Waits until `c` sees the cluster settled on `ids` and returns that map; fails the test after
// `limit`. Map changes wake the wait (stats_after), so it does not poll in a tight loop.
ClusterInfo wait_settled(Client& c, const std::set<uint32_t>& ids,
                         std::chrono::seconds limit = std::chrono::seconds(30),
                         Settle what = Settle::kSlots);

// A value of `size` bytes that names `key` and `version`, so a reader can tell a stale or torn
// value.
std::string versioned(const std::string& key, uint64_t version, size_t size);

// The version a value carries, or -1 when it is not a whole value of `key` of `size` bytes.
int64_t version_of(const std::string& key, std::string_view value, size_t size);

}  // namespace kvrdma::testing
