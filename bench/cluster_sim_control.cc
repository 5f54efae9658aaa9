// cluster_sim --mode control-plane (cluster_sim_control.h). Per cluster size: a fresh etcd (or
// --etcd-endpoints), N nodes started one after another, each a real kvrdma::Server in cluster
// mode with its own etcd client behind a CountingStore; then three phases, each bounded in time:
//   1. registration: from the first start until every node serves by one balanced map;
//   2. steady state: etcd requests over a window, summed over the nodes and per node;
//   3. failover: K nodes killed one at a time (their etcd clients go silent), each timed from the
//      kill to etcd dropping its registration, to a survivor installing a map without it, and to
//      the map settling again.
// Timing polls the nodes' maps every 2 ms, so every figure is late by up to ~2 ms.
#include "cluster_sim_control.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster/meta_store.h"
#include "cluster/slot_map.h"
#include "cluster_sim_observer.h"
#include "cluster_sim_store.h"
#include "common/logging.h"
#include "etcd_process.h"
#include "kvrdma/server.h"
#include "server/cluster_node.h"

namespace cluster_sim {
namespace {

using kvrdma::cluster::kNoNode;
using kvrdma::cluster::kSlots;
using kvrdma::server::ServerAccess;
using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

double ms_since(Steady::time_point from, Steady::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// One simulated node. `dead`: killed by the bench (its server runs on, cut off from etcd).
struct Node {
  uint32_t id = 0;
  std::shared_ptr<CountingStore> store;
  std::unique_ptr<kvrdma::Server> server;
  bool dead = false;

  std::shared_ptr<const kvrdma::cluster::SlotMap> map() const {
    return ServerAccess::core(*server).cluster->map();
  }
  bool controller() const { return ServerAccess::cluster_node(*server)->is_controller(); }
};

struct KillResult {
  uint32_t victim = 0;
  bool was_controller = false;
  double since_keepalive_ms = 0;  // from its last answered keepalive to the kill
  double lease_gone_ms = -1;      // kill -> etcd deleted its registration (seen by a watcher)
  double new_map_ms = -1;         // kill -> a survivor installed a map without it
  double new_controller_ms = -1;  // kill -> a survivor holds the controller key (controller kills)
  double settled_ms = -1;         // kill -> every survivor serves by one balanced map again
  uint64_t epochs = 0;            // maps published from the kill to the settled one
};

struct RunResult {
  uint32_t nodes = 0;
  double etcd_start_ms = -1;
  double start_all_ms = 0;  // N sequential Server starts (each registers in etcd)
  double settle_ms = -1;    // first start -> one balanced map on every node
  uint64_t settle_epoch = 0;
  double window_s = 0;
  OpCounts window_ops{};                      // etcd requests of all nodes in the window, by kind
  double per_node_min = 0, per_node_max = 0;  // requests/s of one node
  double bench_cpu = -1, etcd_cpu = -1;       // % of one core over the window
  uint64_t rss_mib = 0, threads = 0;          // the bench process at steady state
  uint64_t prefix_bytes = 0;  // keys + values under /kvrdma/<cluster>/: what one range reads
  bool quiet_window = true;   // no map published during the window
  std::vector<KillResult> kills;
  double shutdown_ms = 0;
  std::string error;  // what broke; empty when the run finished

  uint64_t window_total() const {
    uint64_t n = 0;
    for (uint64_t c : window_ops) n += c;
    return n;
  }
};

// CPU seconds (user + system) of process `pid` so far, from /proc/<pid>/stat; -1 when unreadable.
double cpu_seconds(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(in, line) || line.rfind(')') == std::string::npos) return -1;
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {  // field 3 is the state; 14, 15 the times
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The etcd this process started (a child named "etcd"), for its CPU time; -1 when none.
pid_t etcd_child() {
  std::error_code ec;
  for (const auto& d : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = d.path().filename();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(d.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    const size_t open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == getpid() && line.substr(open + 1, close - open - 1) == "etcd")
      return std::stoi(pid);
  }
  return -1;
}

// "VmRSS" or "Threads" of this process from /proc/self/status (kB for VmRSS); 0 when absent.
uint64_t self_status(std::string_view field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field) && line.size() > field.size() && line[field.size()] == ':') {
      return std::stoull(line.substr(field.size() + 1));
    }
  }
  return 0;
}

// Every live node serves by the same map, which names exactly the live nodes, moves nothing and
// gives each of them floor or ceil of kSlots / live slots (so no slot is unowned).
bool settled(const std::vector<Node>& nodes) {
  std::shared_ptr<const kvrdma::cluster::SlotMap> m;
  size_t live = 0;
  for (const Node& n : nodes) {
    if (n.dead) continue;
    ++live;
    auto mine = n.map();
    if (!m) m = mine;
    if (mine->epoch != m->epoch) return false;
  }
  if (!m || m->epoch == 0 || m->nodes.size() != live || m->moving()) return false;
  std::vector<uint32_t> count(nodes.size() + 2, 0);  // ids are 1..N
  for (uint32_t s = 0; s < kSlots; ++s) {
    const uint32_t o = m->owner_of(s);
    if (o == kNoNode || o >= count.size()) return false;
    ++count[o];
  }
  const size_t low = kSlots / live;
  for (const Node& n : nodes) {
    if (n.dead ? count[n.id] != 0
               : m->node(n.id) == nullptr || count[n.id] < low || count[n.id] > low + 1) {
      return false;
    }
  }
  return true;
}

kvrdma::ServerOptions node_options(uint32_t id, const std::string& cluster, uint64_t lease_ms) {
  kvrdma::ServerOptions o;
  o.listen_addr = "127.0.0.1:0";
  o.memory_bytes = 1 << 20;  // the control plane is measured, not the data path
  o.node_id = id;
  o.log_level = kvrdma::LogLevel::kWarn;
  o.cluster = cluster;
  o.node_lease_ms = lease_ms;
  return o;
}

// Phases 1-3 on `nodes` (empty on entry; the caller tears them down on every path). Fills `r`;
// sets r.error and returns at the first thing that breaks.
void measure(std::vector<Node>& nodes, const std::vector<std::string>& endpoints,
             const std::string& cluster, const ControlPlaneOptions& o, pid_t etcd_pid,
             std::unique_ptr<Observer>& observer, RunResult& r) {
  const uint32_t n = r.nodes;
  fmt::print(stderr, "[{} nodes] starting them one by one\n", n);
  const auto t0 = Steady::now();
  for (uint32_t id = 1; id <= n; ++id) {
    auto etcd = kvrdma::cluster::connect_etcd(endpoints, 3s);
    if (!etcd) {
      r.error = fmt::format("node {}: {}", id, etcd.status().to_string());
      return;
    }
    Node node{id, std::make_shared<CountingStore>(std::move(*etcd)), nullptr, false};
    auto server = ServerAccess::start(node_options(id, cluster, o.lease_ms), node.store, true);
    if (!server) {
      r.error = fmt::format("node {} of {} did not start: {}", id, n, server.status().to_string());
      return;
    }
    node.server = std::move(*server);
    nodes.push_back(std::move(node));
  }
  const auto started = Steady::now();
  r.start_all_ms = ms_since(t0, started);
  fmt::print(stderr, "[{} nodes] started in {:.1f} s; waiting for one balanced map\n", n,
             r.start_all_ms / 1000);

  const auto settle_deadline = started + 60s + n * 500ms;
  while (!settled(nodes) && Steady::now() < settle_deadline) std::this_thread::sleep_for(5ms);
  if (!settled(nodes)) {
    r.error = fmt::format(
        "{} nodes did not settle on one balanced map within {:.0f} s of the "
        "last start (map epoch {})",
        n, ms_since(started, settle_deadline) / 1000, nodes[0].map()->epoch);
    return;
  }
  r.settle_ms = ms_since(t0, Steady::now());
  r.settle_epoch = nodes[0].map()->epoch;
  fmt::print(stderr, "[{} nodes] settled {:.1f} s after the first start, map epoch {}\n", n,
             r.settle_ms / 1000, r.settle_epoch);

  // Steady state. The grace second lets the last map's wave of re-reads pass.
  std::this_thread::sleep_for(1s);
  if (auto etcd = kvrdma::cluster::connect_etcd(endpoints, 3s)) {
    if (auto all = (*etcd)->range(fmt::format("/kvrdma/{}/", cluster))) {
      for (const auto& e : all->entries) r.prefix_bytes += e.key.size() + e.value.size();
    }
  }
  std::vector<OpCounts> before(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) before[i] = nodes[i].store->counts();
  const double cpu0 = cpu_seconds(getpid()), etcd0 = etcd_pid > 0 ? cpu_seconds(etcd_pid) : -1;
  const auto w0 = Steady::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(o.window_ms));
  const auto w1 = Steady::now();
  const double cpu1 = cpu_seconds(getpid()), etcd1 = etcd_pid > 0 ? cpu_seconds(etcd_pid) : -1;
  r.window_s = ms_since(w0, w1) / 1000;
  r.per_node_min = 1e18;
  for (size_t i = 0; i < nodes.size(); ++i) {
    OpCounts after = nodes[i].store->counts();
    uint64_t mine = 0;
    for (size_t k = 0; k < after.size(); ++k) {
      r.window_ops[k] += after[k] - before[i][k];
      mine += after[k] - before[i][k];
    }
    r.per_node_min = std::min(r.per_node_min, mine / r.window_s);
    r.per_node_max = std::max(r.per_node_max, mine / r.window_s);
  }
  r.bench_cpu = cpu0 >= 0 && cpu1 >= 0 ? 100 * (cpu1 - cpu0) / r.window_s : -1;
  r.etcd_cpu = etcd0 >= 0 && etcd1 >= 0 ? 100 * (etcd1 - etcd0) / r.window_s : -1;
  r.rss_mib = self_status("VmRSS") / 1024;
  r.threads = self_status("Threads");
  r.quiet_window = nodes[0].map()->epoch == r.settle_epoch;
  fmt::print(stderr, "[{} nodes] steady state: {:.0f} etcd requests/s\n", n,
             r.window_total() / r.window_s);

  // Failover. The watcher has its own etcd client (not counted as any node's).
  auto watcher = Observer::start(endpoints, fmt::format("/kvrdma/{}/nodes/", cluster));
  if (!watcher) {
    r.error = "the registration watcher: " + watcher.status().to_string();
    return;
  }
  observer = std::move(*watcher);
  const int controller_kill = o.kills >= 2 ? 1 : 0;
  for (int k = 0; k < o.kills; ++k) {
    std::vector<Node*> live, plain;
    for (Node& node : nodes) {
      if (node.dead) continue;
      live.push_back(&node);
      if (!node.controller()) plain.push_back(&node);
    }
    Node* victim = nullptr;
    if (k == controller_kill) {
      auto it = std::find_if(live.begin(), live.end(), [](Node* x) { return x->controller(); });
      if (it == live.end()) {
        r.error = "no live node says it is the controller";
        return;
      }
      victim = *it;
    } else {
      victim = plain[(plain.size() * (2 * k + 1)) / (2 * o.kills)];  // spread over the ids
    }
    KillResult kr;
    kr.victim = victim->id;
    kr.was_controller = victim->controller();
    const uint64_t epoch_before = live[0]->map()->epoch;
    const auto kill_at = Steady::now();
    victim->store->kill();
    victim->dead = true;
    kr.since_keepalive_ms = ms_since(victim->store->last_keepalive(), kill_at);

    const auto deadline = kill_at + 5 * std::chrono::milliseconds(o.lease_ms) + 30s;
    for (int i = 0; i < 10'000'000; ++i) {
      const auto now = Steady::now();
      if (kr.new_map_ms < 0) {
        for (Node* x : live) {
          auto m = x->map();
          if (x != victim && m->epoch > epoch_before && m->node(victim->id) == nullptr) {
            kr.new_map_ms = ms_since(kill_at, now);
            break;
          }
        }
      }
      if (kr.was_controller && kr.new_controller_ms < 0 &&
          std::any_of(live.begin(), live.end(),
                      [&](Node* x) { return x != victim && x->controller(); })) {
        kr.new_controller_ms = ms_since(kill_at, now);
      }
      if (kr.new_map_ms >= 0 && (!kr.was_controller || kr.new_controller_ms >= 0) &&
          settled(nodes)) {
        kr.settled_ms = ms_since(kill_at, Steady::now());
        break;
      }
      if (now >= deadline) break;
      std::this_thread::sleep_for(2ms);
    }
    if (auto gone = observer->gone_at(victim->id, 1s)) kr.lease_gone_ms = ms_since(kill_at, *gone);
    if (kr.settled_ms < 0) {
      r.kills.push_back(kr);
      r.error = fmt::format("after killing node {} the survivors did not settle within {:.0f} s",
                            victim->id, ms_since(kill_at, deadline) / 1000);
      return;
    }
    kr.epochs = (live[0] == victim ? live[1] : live[0])->map()->epoch - epoch_before;
    fmt::print(stderr,
               "[{} nodes] killed node {}{}: map without it after {:.0f} ms, settled "
               "after {:.0f} ms\n",
               n, kr.victim, kr.was_controller ? " (controller)" : "", kr.new_map_ms,
               kr.settled_ms);
    r.kills.push_back(kr);
  }
}

// Silences every node's etcd client first (so no node's exit makes the others move slots),
// then shuts the servers down. Their complaints about the silent etcd are expected: not logged.
void teardown(std::vector<Node>& nodes, RunResult& r) {
  const auto t0 = Steady::now();
  kvrdma::log::set_level(kvrdma::LogLevel::kError);
  for (Node& node : nodes) node.store->kill();
  for (Node& node : nodes) node.server->shutdown();
  nodes.clear();
  r.shutdown_ms = ms_since(t0, Steady::now());
}

// Removes what the run left under the cluster's prefix of an etcd we did not start.
void erase_prefix(const std::vector<std::string>& endpoints, const std::string& cluster) {
  auto etcd = kvrdma::cluster::connect_etcd(endpoints, 3s);
  if (!etcd) return;
  auto keys = (*etcd)->range(fmt::format("/kvrdma/{}/", cluster));
  if (!keys) return;
  for (const auto& e : keys->entries) (void)(*etcd)->erase(e.key);
}

RunResult run_one(uint32_t n, const ControlPlaneOptions& o) {
  RunResult r;
  r.nodes = n;
  std::unique_ptr<kvrdma::testing::EtcdProcess> etcd;
  std::vector<std::string> endpoints;
  if (o.etcd_endpoints.empty()) {
    const auto t0 = Steady::now();
    auto started = kvrdma::testing::EtcdProcess::start();
    if (!started) {
      r.error = "etcd: " + started.status().to_string();
      return r;
    }
    etcd = std::move(*started);
    r.etcd_start_ms = ms_since(t0, Steady::now());
    endpoints.push_back(etcd->endpoint());
  } else {
    std::istringstream list(o.etcd_endpoints);
    for (std::string e; std::getline(list, e, ',');) {
      if (!e.empty()) endpoints.push_back(e);
    }
  }
  const std::string cluster = fmt::format("sim-{}-{}", getpid(), n);
  std::vector<Node> nodes;
  nodes.reserve(n);
  std::unique_ptr<Observer> observer;
  measure(nodes, endpoints, cluster, o, etcd ? etcd_child() : -1, observer, r);
  teardown(nodes, r);
  observer.reset();
  if (!etcd) erase_prefix(endpoints, cluster);
  return r;  // etcd stops with `etcd`
}

std::string json_escaped(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out;
}

std::string fixed(double v, int digits) {
  return v < 0 ? "n/a" : fmt::format("{:.{}f}", v, digits);
}

void print_table(const std::vector<RunResult>& runs, const ControlPlaneOptions& o) {
  fmt::print(
      "control plane: nodes in one process, mock transport, 1 MiB pools, node lease {} "
      "ms, steady window {} ms\n\n",
      o.lease_ms, o.window_ms);
  fmt::print(
      "| nodes | start all s | settled s | map epoch | etcd req/s | per node req/s (min-max) "
      "| keepalive / range / watch per s | other req | range reply KiB | bench CPU % | etcd CPU % "
      "| RSS MiB | threads |\n");
  fmt::print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const RunResult& r : runs) {
    if (r.window_s <= 0) continue;
    const auto& w = r.window_ops;
    auto rate = [&](Op op) { return w[static_cast<size_t>(op)] / r.window_s; };
    const uint64_t other = r.window_total() - w[static_cast<size_t>(Op::kKeepAlive)] -
                           w[static_cast<size_t>(Op::kRange)] - w[static_cast<size_t>(Op::kWatch)];
    fmt::print(
        "| {} | {:.1f} | {:.1f} | {} | {:.0f}{} | {:.2f} ({:.2f}-{:.2f}) | {:.0f} / {:.0f} / "
        "{:.0f} | {} | {:.0f} | {} | {} | {} | {} |\n",
        r.nodes, r.start_all_ms / 1000, r.settle_ms / 1000, r.settle_epoch,
        r.window_total() / r.window_s, r.quiet_window ? "" : " (maps changed)",
        r.window_total() / r.window_s / r.nodes, r.per_node_min, r.per_node_max,
        rate(Op::kKeepAlive), rate(Op::kRange), rate(Op::kWatch), other, r.prefix_bytes / 1024.0,
        fixed(r.bench_cpu, 0), fixed(r.etcd_cpu, 0), r.rss_mib, r.threads);
  }
  fmt::print(
      "\n| nodes | kill | node | was controller | its last keepalive before the kill ms "
      "| registration gone ms | first map without it ms | new controller ms | settled ms "
      "| maps |\n");
  fmt::print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const RunResult& r : runs) {
    for (size_t k = 0; k < r.kills.size(); ++k) {
      const KillResult& x = r.kills[k];
      fmt::print("| {} | {} | {} | {} | {:.0f} | {} | {} | {} | {} | {} |\n", r.nodes, k + 1,
                 x.victim, x.was_controller ? "yes" : "no", x.since_keepalive_ms,
                 fixed(x.lease_gone_ms, 0), fixed(x.new_map_ms, 0),
                 x.was_controller ? fixed(x.new_controller_ms, 0) : "-", fixed(x.settled_ms, 0),
                 x.epochs);
    }
  }
  for (const RunResult& r : runs) {
    fmt::print("\n{} nodes: etcd started in {} ms; shutdown took {:.0f} ms{}{}\n", r.nodes,
               fixed(r.etcd_start_ms, 0), r.shutdown_ms,
               r.error.empty() ? "" : "; FAILED: ", r.error);
  }
}

void print_json(const RunResult& r, const ControlPlaneOptions& o) {
  std::string ops, kills;
  for (size_t k = 0; k < r.window_ops.size(); ++k) {
    ops += fmt::format("{}\"{}\":{}", k ? "," : "", op_name(static_cast<Op>(k)), r.window_ops[k]);
  }
  for (const KillResult& x : r.kills) {
    kills += fmt::format(
        "{}{{\"node\":{},\"controller\":{},\"since_keepalive_ms\":{:.1f},"
        "\"lease_gone_ms\":{:.1f},\"new_map_ms\":{:.1f},"
        "\"new_controller_ms\":{:.1f},\"settled_ms\":{:.1f},\"maps\":{}}}",
        kills.empty() ? "" : ",", x.victim, x.was_controller, x.since_keepalive_ms, x.lease_gone_ms,
        x.new_map_ms, x.new_controller_ms, x.settled_ms, x.epochs);
  }
  fmt::print(
      "{{\"mode\":\"control-plane\",\"nodes\":{},\"lease_ms\":{},\"etcd_start_ms\":{:.1f},"
      "\"start_all_ms\":{:.1f},\"settle_ms\":{:.1f},\"settle_epoch\":{},\"window_s\":{:.3f},"
      "\"window_requests\":{{{}}},\"requests_per_s\":{:.1f},\"per_node_min\":{:.2f},"
      "\"per_node_max\":{:.2f},\"quiet_window\":{},\"bench_cpu_pct\":{:.1f},"
      "\"etcd_cpu_pct\":{:.1f},\"rss_mib\":{},\"threads\":{},\"prefix_bytes\":{},\"kills\":[{}],"
      "\"shutdown_ms\":{:.1f},\"error\":\"{}\"}}\n",
      r.nodes, o.lease_ms, r.etcd_start_ms, r.start_all_ms, r.settle_ms, r.settle_epoch, r.window_s,
      ops, r.window_s > 0 ? r.window_total() / r.window_s : 0.0, r.per_node_min, r.per_node_max,
      r.quiet_window, r.bench_cpu, r.etcd_cpu, r.rss_mib, r.threads, r.prefix_bytes, kills,
      r.shutdown_ms, json_escaped(r.error));
}

}  // namespace

int run_control_plane(const ControlPlaneOptions& o) {
  if (o.etcd_endpoints.empty() && !kvrdma::testing::etcd_available()) {
    fmt::print(stderr,
               "control-plane mode needs etcd: install etcd-server (scripts/install-deps) "
               "or pass --etcd-endpoints\n");
    return 2;
  }
  std::vector<RunResult> runs;
  int rc = 0;
  for (uint32_t n : o.nodes) {
    runs.push_back(run_one(n, o));
    if (!runs.back().error.empty()) {
      fmt::print(stderr, "[{} nodes] FAILED: {}\n", n, runs.back().error);
      rc = 1;
    }
    if (o.json) print_json(runs.back(), o);
  }
  if (!o.json) print_table(runs, o);
  return rc;
}

}  // namespace cluster_sim
