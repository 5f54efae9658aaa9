// Cluster mode end to end: a real etcd and 3-5 kv-server processes on loopback, driven through
// the C++ client and kv-client as a user would (docs/cluster.md). Over the mock, and the kill and
// join cases over libfabric tcp too (tests/cluster_integration.cmake).
#include <signal.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "integration/cluster_harness.h"
#include "integration/test_client.h"

namespace kvrdma::testing {
namespace {

using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr uint64_t kLoadTimeoutMs = 2000;

// Clients with room for the 64 MiB value.
TestClusterOptions cluster_options() {
  TestClusterOptions o;
  o.client_buffer_bytes = 128ull << 20;
  return o;
}

}  // namespace

TEST_CASE("cluster: keys spread over three nodes, a 64 MiB value, get_many across nodes",
          "[cluster]") {
  REQUIRE(etcd_available());
  TestCluster cl(cluster_options());
  cl.start_all({1, 2, 3});
  auto c = cl.client();
  auto info = wait_settled(*c, {1, 2, 3});
  for (const auto& n : info.nodes) {
    CHECK(n.slots >= 16384 / 3);
    CHECK(n.slots <= 16384 / 3 + 1);
  }

  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back("key-" + std::to_string(i));
  for (size_t i = 0; i < keys.size(); ++i) {
    size_t size = i % 10 == 0 ? (200 << 10) : 100;  // some go by transport write
    REQUIRE(c->put(keys[i], versioned(keys[i], 1, size)).is_ok());
  }
  // Every node holds a share.
  info = *c->cluster();
  uint64_t total = 0;
  for (const auto& n : info.nodes) {
    CHECK(n.keys > 0);
    total += n.keys;
  }
  CHECK(total == keys.size());

  std::vector<std::string_view> views(keys.begin(), keys.end());
  views.push_back(keys[0]);  // a duplicate
  views.push_back("absent-key");
  auto got = c->get_many(views);
  REQUIRE(got.size() == views.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    REQUIRE(got[i].is_ok());
    size_t size = i % 10 == 0 ? (200 << 10) : 100;
    CHECK(version_of(keys[i], got[i]->str(), size) == 1);
  }
  CHECK(got[keys.size()].is_ok());
  CHECK(got[keys.size() + 1].status().code() == Code::kNotFound);

  // locate names the owner, which serves the key.
  auto where = c->locate(keys[5]);
  REQUIRE(where.is_ok());
  CHECK(where->length == 100);
  auto out = run_client(cl.node(where->node_id).address(), {"locate", keys[5], "--json"});
  CHECK(out.exit_code == 0);
  CHECK(json_uint(out.out, "node_id") == where->node_id);
  CHECK(json_uint(out.out, "length") == 100);

  const std::string big = pattern(64u << 20, 64);
  REQUIRE(c->put("big-value", big).is_ok());
  auto v = c->get("big-value");
  INFO(v.status().to_string());
  REQUIRE(v.is_ok());
  CHECK(v->str() == big);

  // kv-client cluster lists every node.
  auto shown = run_client(cl.addresses(), {"cluster"});
  CHECK(shown.exit_code == 0);
  for (uint32_t id : {1u, 2u, 3u}) {
    CHECK(shown.out.find(cl.node(id).address()) != std::string::npos);
  }
}

TEST_CASE("cluster: two nodes with one id: the second refuses to start, saying so", "[cluster]") {
  REQUIRE(etcd_available());
  TestCluster cl(cluster_options());
  cl.start(7);
  auto args = cl.node_args(7);
  args.insert(args.end(), {"--listen-addr", "127.0.0.1:0"});
  auto r = run(server_binary(), args, {}, 30s);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("node id 7") != std::string::npos);
  CHECK(r.err.find(cl.node(7).address()) != std::string::npos);
}

TEST_CASE("cluster: etcd unreachable at start is a clear error", "[cluster]") {
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(unused_loopback_port());
  auto r = run(server_binary(),
               {"--cluster", "x", "--etcd-endpoints", endpoint, "--node-id", "1", "--listen-addr",
                "127.0.0.1:0"},
               {}, 30s);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find(endpoint) != std::string::npos);
  CHECK(r.err.find("etcd") != std::string::npos);
}

TEST_CASE("cluster: etcd stopped while running: the data path keeps serving on the last map",
          "[cluster]") {
  REQUIRE(etcd_available());
  TestCluster cl(cluster_options());
  cl.start_all({1, 2});
  auto c = cl.client();
  auto before = wait_settled(*c, {1, 2});
  cl.etcd().pause();
  // Longer than a lease: nodes cannot renew, yet nobody can declare them dead either.
  const auto until = Steady::now() + std::chrono::milliseconds(cl.options().lease_ms * 5 / 4);
  int rounds = 0;
  while (Steady::now() < until && rounds < 200000) {
    std::string key = "during-outage-" + std::to_string(rounds % 50);
    INFO("round " << rounds << ", key " << key);
    Status put = c->put(key, versioned(key, rounds, 64));
    INFO(put.to_string());
    REQUIRE(put.is_ok());
    auto v = c->get(key);
    INFO(v.status().to_string());
    REQUIRE(v.is_ok());
    CHECK(version_of(key, v->str(), 64) == rounds);
    ++rounds;
  }
  auto during = c->cluster();
  REQUIRE(during.is_ok());
  CHECK(during->epoch == before.epoch);  // no map change without etcd
  cl.etcd().resume();
  // Joins work again once etcd is back.
  cl.start(3);
  wait_settled(*c, {1, 2, 3});
  for (int i = 0; i < 50; ++i) {
    std::string key = "during-outage-" + std::to_string(i);
    auto v = c->get(key);
    REQUIRE(v.is_ok());
    CHECK(version_of(key, v->str(), 64) >= 0);
  }
}

// Readers and writers over a key set while the membership changes; every read is checked against
// what was acknowledged: a value older than the last acknowledged PUT, a torn value or a miss of
// a key that exists is an error.
class Load {
 public:
  Load(const TestCluster& cl, int keys) : acked_(keys), started_(keys) {
    auto c = cl.client();
    for (int i = 0; i < keys; ++i) {
      const std::string k = key(i);
      REQUIRE(c->put(k, versioned(k, 1, size(i))).is_ok());
      acked_[i] = started_[i] = 1;
    }
    // A call in flight to a node that is then killed waits out its deadline: a short one keeps
    // stop() from waiting that long (a failed call only counts as a failure).
    ClientOptions o = cl.client_options(ReadFrom::kPrimary);
    o.timeout_ms = kLoadTimeoutMs;
    for (int t = 0; t < 3; ++t) {
      clients_.push_back(connect_client(o));
      threads_.emplace_back([this, t] { run(*clients_[t], t); });
    }
  }
  ~Load() { stop(); }

  void stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  static std::string key(int i) { return "load-" + std::to_string(i); }
  static size_t size(int i) { return i % 8 == 0 ? (96 << 10) : 200; }

  std::atomic<uint64_t> reads{0}, writes{0}, misses{0}, failures{0}, wrong{0};
  std::string first_wrong;  // written once, by the thread that counts the first wrong value

 private:
  void run(Client& c, int seed) {
    const int n = static_cast<int>(acked_.size());
    uint64_t i = static_cast<uint64_t>(seed) * 7919;
    const auto until = Steady::now() + 120s;  // bounded even if stop() never comes
    while (!stop_ && Steady::now() < until) {
      ++i;
      const int k = static_cast<int>(i % n);
      const std::string name = key(k);
      if (seed == 0 && i % 3 == 0) {  // one writer thread, so versions per key only grow
        uint64_t v = started_[k] + 1;
        started_[k] = v;
        if (c.put(name, versioned(name, v, size(k))).is_ok()) {
          acked_[k] = v;
          ++writes;
        } else {
          ++failures;
        }
        continue;
      }
      const uint64_t floor = acked_[k];
      auto got = c.get(name);
      if (!got.is_ok()) {
        if (got.status().code() == Code::kNotFound) {
          ++misses;
        } else {
          ++failures;
        }
        continue;
      }
      ++reads;
      int64_t v = version_of(name, got->str(), size(k));
      if (v < 0 || static_cast<uint64_t>(v) < floor || static_cast<uint64_t>(v) > started_[k]) {
        if (wrong++ == 0) {
          first_wrong = name + " read version " + std::to_string(v) + ", acknowledged " +
                        std::to_string(floor);
        }
      }
    }
  }

  std::vector<std::atomic<uint64_t>> acked_, started_;
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<std::thread> threads_;
};

TEST_CASE("cluster: a node joins and one leaves under load: no miss, no stale value",
          "[cluster][cluster-moves]") {
  REQUIRE(etcd_available());
  TestCluster cl(cluster_options());
  cl.start_all({1, 2, 3});
  auto c = cl.client();
  wait_settled(*c, {1, 2, 3});
  Load load(cl, 400);

  cl.start(4);
  auto info = wait_settled(*c, {1, 2, 3, 4});
  uint64_t moved_in = 0;
  for (const auto& n : info.nodes) {
    if (n.id == 4) CHECK(n.keys > 0);
  }
  auto s4 = run_client(cl.node(4).address(), {"stats", "--json"});
  moved_in = json_uint(s4.out, "keys_moved_in");
  CHECK(moved_in > 0);

  // Graceful leave: SIGTERM hands node 1's slots over, then it exits cleanly.
  CHECK(cl.node(1).stop() == 0);
  cl.forget(1);
  wait_settled(*c, {2, 3, 4});
  load.stop();
  INFO(load.first_wrong);
  CHECK(load.wrong == 0);
  CHECK(load.misses == 0);
  CHECK(load.reads > 0);
  CHECK(load.writes > 0);
  // Every key still holds its last acknowledged value.
  for (int i = 0; i < 400; ++i) {
    auto v = c->get(Load::key(i));
    REQUIRE(v.is_ok());
    CHECK(version_of(Load::key(i), v->str(), Load::size(i)) >= 1);
  }
}

TEST_CASE("cluster: a node SIGKILLed under load: every key served again within lease + 2 s",
          "[cluster][cluster-kill]") {
  REQUIRE(etcd_available());
  TestCluster cl(cluster_options());
  cl.start_all({1, 2, 3});
  auto c = cl.client();
  wait_settled(*c, {1, 2, 3});
  Load load(cl, 300);

  const auto killed_at = Steady::now();
  cl.kill(2);
  // Every key answers again (a value or, for the dead node's keys, a miss) once its slots moved.
  const auto until = killed_at + std::chrono::milliseconds(cl.options().lease_ms) + 20s;
  std::set<int> pending;
  for (int i = 0; i < 300; ++i) pending.insert(i);
  while (!pending.empty() && Steady::now() < until) {
    for (auto it = pending.begin(); it != pending.end();) {
      auto v = c->get(Load::key(*it));
      bool served = v.is_ok() || v.status().code() == Code::kNotFound;
      it = served ? pending.erase(it) : std::next(it);
    }
  }
  const auto recovered =
      std::chrono::duration_cast<std::chrono::milliseconds>(Steady::now() - killed_at);
  WARN("all keys served again " << recovered.count() << " ms after the SIGKILL (lease "
                                << cl.options().lease_ms << " ms)");
  CHECK(pending.empty());
  CHECK(recovered.count() <=
        static_cast<int64_t>(cl.options().lease_ms) + 2000 + 3000);  // + CI slack
  wait_settled(*c, {1, 3});
  load.stop();
  INFO(load.first_wrong);
  CHECK(load.wrong == 0);
  CHECK(load.reads > 0);
}

}  // namespace kvrdma::testing
