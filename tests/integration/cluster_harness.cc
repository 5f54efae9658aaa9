#include "integration/cluster_harness.h"

#include <signal.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <charconv>

#include "integration/test_client.h"

namespace kvrdma::testing {

using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

TestCluster::TestCluster(TestClusterOptions options)
    : options_(std::move(options)),
      name_(options_.name_prefix + std::to_string(::getpid()) + "-" + std::to_string(counter_++)) {
  auto e = EtcdProcess::start();
  if (!e.is_ok()) FAIL("etcd did not start: " << e.status().to_string());
  etcd_ = std::move(*e);
}

TestCluster::~TestCluster() {
  for (auto& [id, n] : nodes_) {
    ::kill(n->pid(), SIGCONT);
    ::kill(n->pid(), SIGKILL);
  }
  nodes_.clear();
}

std::vector<std::string> TestCluster::node_args(uint32_t id) const {
  return {"--cluster",        name_,
          "--etcd-endpoints", etcd_->endpoint(),
          "--node-id",        std::to_string(id),
          "--node-lease-ms",  std::to_string(options_.lease_ms),
          "--memory-mb",      std::to_string(options_.memory_mb),
          "--replicas",       std::to_string(options_.replicas)};
}

ServerProcess& TestCluster::start(uint32_t id) {
  nodes_[id] = std::make_unique<ServerProcess>(node_args(id));
  return *nodes_[id];
}

void TestCluster::start_all(std::initializer_list<uint32_t> ids) {
  for (uint32_t id : ids) {
    nodes_[id] = std::make_unique<ServerProcess>(node_args(id), ServerProcess::NoWait{});
  }
  for (uint32_t id : ids) nodes_[id]->wait_ready();
}

void TestCluster::kill(uint32_t id) {
  REQUIRE(::kill(nodes_.at(id)->pid(), SIGKILL) == 0);
  nodes_.erase(id);
}

std::string TestCluster::addresses() const {
  std::string out;
  for (const auto& [id, n] : nodes_) out += (out.empty() ? "" : ",") + n->address();
  return out;
}

ClientOptions TestCluster::client_options(ReadFrom read_from, const std::string& addrs) const {
  ClientOptions o =
      test_client_options(addrs.empty() ? addresses() : addrs, options_.client_buffer_bytes);
  o.timeout_ms = options_.client_timeout_ms;
  o.read_from = read_from;
  return o;
}

std::unique_ptr<Client> TestCluster::client(ReadFrom read_from, const std::string& addrs) const {
  return connect_client(client_options(read_from, addrs));
}

bool settled(const ClusterInfo& info, const std::set<uint32_t>& ids, Settle what) {
  if (info.epoch == 0 || info.moving_slots != 0) return false;
  if (what == Settle::kReplicasFilled && info.replicas_missing != 0) return false;
  std::set<uint32_t> owners;
  uint64_t slots = 0;
  for (const auto& n : info.nodes) {
    if (n.slots > 0) owners.insert(n.id);
    slots += n.slots;
  }
  return owners == ids && slots == 16384;
}

ClusterInfo wait_settled(Client& c, const std::set<uint32_t>& ids, std::chrono::seconds limit,
                         Settle what) {
  const auto until = Steady::now() + limit;
  uint64_t version = 0;
  for (;;) {
    auto info = c.cluster();
    if (info.is_ok() && settled(*info, ids, what)) return *info;
    if (Steady::now() > until) {
      FAIL("the cluster did not settle on "
           << ids.size() << " nodes"
           << (what == Settle::kReplicasFilled ? " with every replica filled" : "") << " within "
           << limit.count() << " s");
    }
    auto s = c.stats_after(version, 500ms);
    if (s.is_ok()) version = s->version;
  }
}

std::string versioned(const std::string& key, uint64_t version, size_t size) {
  std::string head = key + "#" + std::to_string(version) + "#";
  std::string body = pattern(size > head.size() ? size - head.size() : 0,
                             static_cast<unsigned>(version * 7919 + key.size()));
  return head + body;
}

int64_t version_of(const std::string& key, std::string_view value, size_t size) {
  if (value.size() != size || value.substr(0, key.size() + 1) != key + "#") return -1;
  const size_t end = value.find('#', key.size() + 1);
  if (end == std::string_view::npos) return -1;
  // A torn value may carry anything here: parse without throwing.
  uint64_t v = 0;
  const char* first = value.data() + key.size() + 1;
  const char* last = value.data() + end;
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc() || ptr != last || first == last) return -1;
  return value == versioned(key, v, size) ? static_cast<int64_t>(v) : -1;
}

}  // namespace kvrdma::testing
