// replica_bench: what replicas cost and buy (docs/cluster.md "Replicas"), over in-process
// kv-server nodes sharing one in-memory MetaStore and the mock transport (one host, so the
// figures are of the replication protocol, not of a network). Short phases, < 60 s in all:
//   1. PUT latency (one client, sequential) and throughput (8 clients) at R = 1, 2, 3 on three
//      nodes, for 64 B and 1 MiB values;
//   2. GET of one hot key from 16 clients at R = 1 (primary) and R = 3 (read_from any);
//   3. failover at R = 2: one node's lease ended (as when it is SIGKILLed and its lease runs
//      out), timed to every slot having a live primary again and to every replica filled
//      again; the bytes the fill moved and at what rate.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cluster/meta_store.h"
#include "cluster/slot_map.h"
#include "kvrdma/client.h"
#include "kvrdma/cluster.h"
#include "kvrdma/server.h"
#include "server/cluster_node.h"
#include "server/replication.h"

namespace {

using kvrdma::server::ServerAccess;
using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

double ms_since(Steady::time_point t) {
  return std::chrono::duration<double, std::milli>(Steady::now() - t).count();
}

struct Nodes {
  std::shared_ptr<kvrdma::cluster::MemoryMetaStore> meta =
      kvrdma::cluster::MemoryMetaStore::create();
  std::vector<std::unique_ptr<kvrdma::Server>> servers;
  std::string addresses;

  // poll_us: the nodes' channel poll window (ServerOptions::poll_us; 0: sleep on the doorbell
  // at once, for nodes that share a host's cores with each other and with the clients).
  bool start(int n, uint32_t replicas, const std::string& name, uint64_t poll_us = 50) {
    for (int id = 1; id <= n; ++id) {
      kvrdma::ServerOptions o;
      o.listen_addr = "127.0.0.1:0";
      o.memory_bytes = 512ull << 20;
      o.node_id = static_cast<uint32_t>(id);
      o.log_level = kvrdma::LogLevel::kError;
      o.cluster = name;
      o.node_lease_ms = 1000;
      o.replicas = replicas;
      o.poll_us = poll_us;
      auto s = ServerAccess::start(o, meta);
      if (!s) {
        fmt::print(stderr, "node {}: {}\n", id, s.status().to_string());
        return false;
      }
      if (!addresses.empty()) addresses += ',';
      addresses += (*s)->address();
      servers.push_back(std::move(*s));
    }
    return true;
  }
  ~Nodes() {
    for (auto& s : servers) {
      if (s) s->shutdown();
    }
  }
};

std::unique_ptr<kvrdma::Client> connect(const std::string& addrs, kvrdma::ReadFrom from) {
  kvrdma::ClientOptions o;
  o.server_addr = addrs;
  o.buffer_bytes = 64ull << 20;
  o.read_from = from;
  auto c = kvrdma::Client::connect(o);
  if (!c) {
    fmt::print(stderr, "connect: {}\n", c.status().to_string());
    return nullptr;
  }
  return std::move(*c);
}

// Until every slot has a primary and every replica is filled (bounded).
bool wait_replicated(kvrdma::Client& c, size_t nodes, std::chrono::seconds limit = 20s) {
  const auto until = Steady::now() + limit;
  while (Steady::now() < until) {
    auto info = c.cluster();
    if (info && info->epoch > 0 && info->moving_slots == 0 && info->replicas_missing == 0) {
      size_t owners = 0;
      uint64_t slots = 0;
      for (const auto& n : info->nodes) {
        owners += n.slots > 0;
        slots += n.slots;
      }
      if (owners == nodes && slots == kvrdma::cluster::kSlots) return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

void put_figures(const std::string& addrs, uint32_t r, size_t size, int ops) {
  auto c = connect(addrs, kvrdma::ReadFrom::kPrimary);
  if (!c) return;
  const std::string value(size, 'v');
  std::vector<double> lat;
  for (int i = 0; i < ops; ++i) {
    const auto t = Steady::now();
    if (!c->put(fmt::format("lat{}", i), value).is_ok()) continue;
    lat.push_back(ms_since(t) * 1000);
  }
  std::sort(lat.begin(), lat.end());
  const auto pct = [&](double p) { return lat.empty() ? 0 : lat[size_t(p * (lat.size() - 1))]; };
  // Throughput: 8 clients for a fixed time.
  constexpr int kThreads = 8;
  std::atomic<uint64_t> done{0};
  const auto window = size > 4096 ? 1500ms : 1000ms;
  const auto t0 = Steady::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      auto cc = connect(addrs, kvrdma::ReadFrom::kPrimary);
      if (!cc) return;
      for (int i = 0; Steady::now() - t0 < window; ++i) {
        if (cc->put(fmt::format("tp{}-{}", t, i % 200), value).is_ok()) ++done;
      }
    });
  }
  for (auto& t : ts) t.join();
  const double secs = ms_since(t0) / 1000;
  fmt::print(
      "PUT R={} {:>7}: p50 {:8.1f} us  p99 {:8.1f} us  | {} clients: {:9.0f} ops/s {:7.3f} "
      "GB/s\n",
      r, size >= (1 << 20) ? "1 MiB" : fmt::format("{} B", size), pct(0.5), pct(0.99), kThreads,
      done / secs, done * double(size) / secs / 1e9);
}

void hot_key(Nodes& nodes, uint32_t r, kvrdma::ReadFrom from, uint64_t poll_us = 50) {
  const std::string& addrs = nodes.addresses;
  std::vector<uint64_t> before;
  for (auto& s : nodes.servers) before.push_back(s->stats().gets);
  constexpr int kClients = 16;
  {
    auto c = connect(addrs, from);
    if (!c || !c->put("hot", std::string(4096, 'h')).is_ok()) return;
  }
  std::atomic<uint64_t> done{0};
  const auto t0 = Steady::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < kClients; ++t) {
    ts.emplace_back([&] {
      auto c = connect(addrs, from);
      if (!c) return;
      while (Steady::now() - t0 < 1500ms) {
        if (c->get("hot").is_ok()) ++done;
      }
    });
  }
  for (auto& t : ts) t.join();
  std::string spread;
  for (size_t i = 0; i < nodes.servers.size(); ++i) {
    spread += fmt::format(" node{}={}", i + 1, nodes.servers[i]->stats().gets - before[i]);
  }
  fmt::print(
      "hot-key GET (4 KiB) R={} read_from={} poll-us={}: {} clients {:9.0f} ops/s; GETs "
      "served:{}\n",
      r, from == kvrdma::ReadFrom::kAny ? "any" : "primary", poll_us, kClients,
      done / (ms_since(t0) / 1000), spread);
}

void failover(const std::string& name) {
  Nodes nodes;
  if (!nodes.start(3, 2, name)) return;
  auto c = connect(nodes.addresses, kvrdma::ReadFrom::kPrimary);
  if (!c || !wait_replicated(*c, 3)) return fmt::print("failover: cluster did not settle\n");
  const std::string value(64 << 10, 'f');
  constexpr int kKeys = 3000;  // ~200 MiB over the cluster, two copies each
  for (int i = 0; i < kKeys; ++i) (void)c->put(fmt::format("fo{}", i), value);
  auto& victim = *nodes.servers[1];
  const auto lease = ServerAccess::cluster_node(victim)->lease();
  uint64_t pushed0 = 0;
  for (auto& s : nodes.servers) pushed0 += ServerAccess::core(*s).replication->bytes_pushed();
  const auto t0 = Steady::now();
  nodes.meta->expire_lease(lease);
  victim.shutdown();
  nodes.servers[1].reset();
  auto& live = ServerAccess::core(*nodes.servers[0]);
  double primaried = -1;
  while (ms_since(t0) < 10000) {
    auto m = live.cluster->map();
    bool all = true;
    for (uint32_t s = 0; s < kvrdma::cluster::kSlots && all; ++s) {
      const uint32_t o = m->owner_of(s);
      all = o == 1 || o == 3;
    }
    if (all) {
      primaried = ms_since(t0);
      break;
    }
    std::this_thread::sleep_for(1ms);
  }
  auto c2 = connect(nodes.servers[0]->address(), kvrdma::ReadFrom::kPrimary);
  const bool filled = c2 && wait_replicated(*c2, 2);
  const double refilled = ms_since(t0);
  uint64_t pushed1 = 0;
  for (auto& s : nodes.servers) {
    if (s) pushed1 += ServerAccess::core(*s).replication->bytes_pushed();
  }
  const double bytes = double(pushed1 - pushed0);
  fmt::print(
      "failover R=2, 3 nodes, {} x 64 KiB: every slot primaried again {:.0f} ms after the "
      "lease ended; replicas filled again after {:.0f} ms{}; {:.1f} MiB re-replicated, "
      "{:.2f} GB/s over the fill\n",
      kKeys, primaried, refilled, filled ? "" : " (NOT settled)", bytes / (1 << 20),
      bytes / (std::max(refilled - primaried, 1.0) / 1000) / 1e9);
}

}  // namespace

int main() {
  const auto start = Steady::now();
  for (uint32_t r : {1u, 2u, 3u}) {
    Nodes nodes;
    if (!nodes.start(3, r, fmt::format("bench-put-{}", r))) return 1;
    auto c = connect(nodes.addresses, kvrdma::ReadFrom::kPrimary);
    if (!c || !wait_replicated(*c, 3)) return 1;
    put_figures(nodes.addresses, r, 64, 2000);
    put_figures(nodes.addresses, r, 1 << 20, 100);
    if (r == 1) hot_key(nodes, r, kvrdma::ReadFrom::kPrimary);
    if (r == 3) hot_key(nodes, r, kvrdma::ReadFrom::kAny);
  }
  // The hot key again with the nodes' channel threads sleeping on the doorbell at once: three
  // nodes on one host otherwise spin their poll windows on the cores the clients need.
  for (uint32_t r : {1u, 3u}) {
    Nodes nodes;
    if (!nodes.start(3, r, fmt::format("bench-hot-{}", r), 0)) return 1;
    auto c = connect(nodes.addresses, kvrdma::ReadFrom::kPrimary);
    if (!c || !wait_replicated(*c, 3)) return 1;
    hot_key(nodes, r, r == 1 ? kvrdma::ReadFrom::kPrimary : kvrdma::ReadFrom::kAny, 0);
  }
  failover("bench-failover");
  fmt::print("total {:.1f} s\n", ms_since(start) / 1000);
  return 0;
}
