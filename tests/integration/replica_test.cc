// Replicas end to end (docs/cluster.md "Replicas"): a real etcd and 3-4 kv-server processes with
// --replicas, clients writing and reading (read_from any) against a model of what was
// acknowledged, while nodes are SIGKILLed or SIGSTOPped. The cluster of processes, the versioned
// values and the wait for the map are cluster_test.cc's too (integration/cluster_harness.h).
#include <fmt/format.h>
#include <signal.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "integration/cluster_harness.h"
#include "integration/raw_rpc.h"
#include "kvrdma/client.h"
#include "kvrdma/cluster.h"

namespace kvrdma::testing {
namespace {

using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Nodes with --replicas; clients read from any copy unless told otherwise.
class Cluster : public TestCluster {
 public:
  explicit Cluster(uint32_t replicas)
      : TestCluster({.name_prefix = "r",
                     .replicas = replicas,
                     .client_timeout_ms = 8000,
                     .read_from = ReadFrom::kAny}) {}
};

// Waits (bounded) until the map names exactly `ids`, nothing moves and every replica is filled.
ClusterInfo wait_replicated(Client& c, const std::set<uint32_t>& ids,
                            std::chrono::seconds limit = 40s) {
  return wait_settled(c, ids, limit, Settle::kReplicasFilled);
}

// Writers and readers over disjoint key sets, one client each, checked against what each
// writer saw acknowledged. Problems are collected (Catch2 is not thread-safe) and checked by
// the test thread.
class Load {
 public:
  Load(Cluster& cl, int threads, int keys_per_thread, size_t small, size_t large)
      : keys_(threads * keys_per_thread), small_(small), large_(large) {
    for (int t = 0; t < threads; ++t) clients_.push_back(cl.client(ReadFrom::kAny));
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, t, keys_per_thread] { run(t, keys_per_thread); });
    }
  }
  ~Load() { stop(); }
  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::string key(size_t i) const {
    return "rk{" + std::to_string(i % 997) + "}" + std::to_string(i);
  }
  size_t size_of(size_t i) const { return i % 8 == 0 ? large_ : small_ + i % 100; }
  size_t keys() const { return keys_.size(); }
  uint64_t acked(size_t i) const { return keys_[i].acked.load(); }
  uint64_t attempted(size_t i) const { return keys_[i].attempted.load(); }
  uint64_t puts_ok() const { return puts_ok_; }
  uint64_t gets_ok() const { return gets_ok_; }
  std::vector<std::string> problems() const {
    std::lock_guard lock(mu_);
    return problems_;
  }
  // Waits until `n` more PUTs were acknowledged (bounded).
  void wait_puts(uint64_t n) {
    const uint64_t target = puts_ok_ + n;
    const auto until = Steady::now() + 30s;
    while (puts_ok_ < target && Steady::now() < until) std::this_thread::sleep_for(10ms);
    REQUIRE(puts_ok_ >= target);
  }

 private:
  struct Key {
    std::atomic<uint64_t> acked{0}, attempted{0};
  };
  void problem(std::string p) {
    std::lock_guard lock(mu_);
    if (problems_.size() < 20) problems_.push_back(std::move(p));
  }
  void run(int t, int per) {
    Client& c = *clients_[t];
    uint64_t n = 0;
    const auto until = Steady::now() + 120s;  // bounded even if stop() never came
    while (!stop_ && Steady::now() < until) {
      const size_t i = t * per + (n * 7) % per;
      Key& k = keys_[i];
      const uint64_t v = ++k.attempted;
      Status s = c.put(key(i), versioned(key(i), v, size_of(i)));
      if (s.is_ok()) {
        k.acked = v;
        ++puts_ok_;
      }
      // Read one of this thread's keys back: never older than acknowledged, never torn.
      const size_t j = t * per + (n * 13 + 5) % per;
      const uint64_t floor = keys_[j].acked.load(), ceiling = keys_[j].attempted.load();
      auto got = c.get(key(j));
      if (got.is_ok()) {
        ++gets_ok_;
        int64_t gv = version_of(key(j), got->str(), size_of(j));
        if (gv < 0 || uint64_t(gv) < floor || uint64_t(gv) > ceiling) {
          problem("key " + key(j) + ": read version " + std::to_string(gv) + ", acknowledged " +
                  std::to_string(floor) + ", attempted " + std::to_string(ceiling));
        }
      } else if (got.status().code() == Code::kNotFound && floor > 0) {
        problem("key " + key(j) + ": acknowledged version " + std::to_string(floor) + " not found");
      }
      ++n;
    }
  }

  std::vector<Key> keys_;
  size_t small_, large_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> puts_ok_{0}, gets_ok_{0};
  mutable std::mutex mu_;
  std::vector<std::string> problems_;
};

// Every key the load wrote: whole, and no older than acknowledged (retrying transient errors).
void verify_all(Cluster& cl, const Load& load) {
  auto c = cl.client(ReadFrom::kPrimary);
  size_t checked = 0;
  for (size_t i = 0; i < load.keys(); ++i) {
    if (load.attempted(i) == 0) continue;
    const std::string k = load.key(i);
    Result<ValueView> got = Status(Code::kUnavailable, "not asked");
    const auto until = Steady::now() + 10s;
    do {
      got = c->get(k);
    } while (!got.is_ok() && got.status().code() == Code::kUnavailable && Steady::now() < until);
    INFO("key " << k << " acknowledged " << load.acked(i) << " attempted " << load.attempted(i));
    if (load.acked(i) > 0) REQUIRE(got.is_ok());
    if (!got.is_ok()) continue;
    int64_t v = version_of(k, got->str(), load.size_of(i));
    REQUIRE(v >= int64_t(load.acked(i)));
    REQUIRE(v <= int64_t(load.attempted(i)));
    ++checked;
  }
  REQUIRE(checked > 0);
}

void require_no_problems(const Load& load) {
  auto p = load.problems();
  for (const auto& s : p) UNSCOPED_INFO(s);
  REQUIRE(p.empty());
}

}  // namespace

TEST_CASE(
    "replicas: R=2, a node SIGKILLed under load from three clients loses no acknowledged "
    "value and serves none stale or torn",
    "[replicas][replicas-kill]") {
  REQUIRE(etcd_available());
  Cluster cl(2);
  for (uint32_t id : {1u, 2u, 3u}) cl.start(id);
  auto c = cl.client();
  auto info = wait_replicated(*c, {1, 2, 3});
  CHECK(info.replicas == 2u);
  Load load(cl, 3, 300, 64, 100 << 10);
  load.wait_puts(1500);
  cl.kill(2);
  const auto killed_at = Steady::now();
  wait_replicated(*c, {1, 3});
  const auto back =
      std::chrono::duration_cast<std::chrono::milliseconds>(Steady::now() - killed_at);
  load.wait_puts(500);  // writes go on after the failover
  load.stop();
  WARN("failover and re-replication done " << back.count() << " ms after the SIGKILL; "
                                           << load.puts_ok() << " PUTs and " << load.gets_ok()
                                           << " GETs acknowledged");
  require_no_problems(load);
  verify_all(cl, load);
}

TEST_CASE("replicas: a replica SIGKILLed while 1 MiB values are being replicated",
          "[replicas][replicas-kill]") {
  REQUIRE(etcd_available());
  Cluster cl(3);
  for (uint32_t id : {1u, 2u, 3u}) cl.start(id);
  auto c = cl.client();
  wait_replicated(*c, {1, 2, 3});
  Load load(cl, 2, 40, 1 << 20, 1 << 20);
  load.wait_puts(60);
  cl.kill(3);  // a copy of every slot: pushes to it are in flight
  wait_replicated(*c, {1, 2});
  load.wait_puts(40);
  load.stop();
  require_no_problems(load);
  verify_all(cl, load);
}

TEST_CASE("replicas: two nodes killed one after the other, with time to re-replicate between",
          "[replicas]") {
  REQUIRE(etcd_available());
  Cluster cl(2);
  for (uint32_t id : {1u, 2u, 3u, 4u}) cl.start(id);
  auto c = cl.client();
  wait_replicated(*c, {1, 2, 3, 4});
  Load load(cl, 2, 400, 200, 100 << 10);
  load.wait_puts(1200);
  cl.kill(1);
  wait_replicated(*c, {2, 3, 4});  // every slot has its two copies again
  load.wait_puts(300);
  cl.kill(3);
  wait_replicated(*c, {2, 4});
  load.wait_puts(300);
  load.stop();
  require_no_problems(load);
  verify_all(cl, load);
}

TEST_CASE(
    "replicas: a node joins under load: slots move with their replicas, nothing lost or "
    "stale, and then the new node's death loses nothing either",
    "[replicas]") {
  REQUIRE(etcd_available());
  Cluster cl(2);
  for (uint32_t id : {1u, 2u, 3u}) cl.start(id);
  auto c = cl.client();
  wait_replicated(*c, {1, 2, 3});
  Load load(cl, 3, 300, 100, 100 << 10);
  load.wait_puts(900);
  cl.start(4);  // slots move to it while the load writes and reads them
  wait_replicated(*c, {1, 2, 3, 4});
  load.wait_puts(600);
  cl.kill(4);  // what it took over, and was written to it, lives on at the replicas
  wait_replicated(*c, {1, 2, 3});
  load.wait_puts(300);
  load.stop();
  require_no_problems(load);
  verify_all(cl, load);
}

TEST_CASE(
    "replicas: put_many, DELETE and TTL reach the replicas: after a kill nothing deleted or "
    "expired comes back",
    "[replicas]") {
  REQUIRE(etcd_available());
  Cluster cl(2);
  for (uint32_t id : {1u, 2u, 3u}) cl.start(id);
  auto c = cl.client(ReadFrom::kAny);
  wait_replicated(*c, {1, 2, 3});
  std::vector<std::string> keys, values;
  for (int i = 0; i < 300; ++i) {
    keys.push_back(fmt::format("m{}", i));
    values.push_back(versioned(keys.back(), 1, 300 + i));
  }
  std::vector<KeyValue> items;
  for (size_t i = 0; i < keys.size(); ++i) items.push_back({keys[i], values[i]});
  for (const Status& s : c->put_many(items)) REQUIRE(s.is_ok());
  for (size_t i = 0; i < keys.size(); i += 3) REQUIRE(c->del(keys[i]).is_ok());
  for (size_t i = 1; i < keys.size(); i += 3) {
    REQUIRE(c->put(keys[i], versioned(keys[i], 2, 300 + i), 1500).is_ok());  // 1.5 s TTL
  }
  const auto ttl_set = Steady::now();
  cl.kill(2);
  wait_replicated(*c, {1, 3});
  while (Steady::now() < ttl_set + 1600ms) std::this_thread::sleep_for(50ms);
  auto fresh = cl.client(ReadFrom::kAny);
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO("key " << keys[i]);
    auto got = fresh->get(keys[i]);
    if (i % 3 == 2) {
      REQUIRE(got.is_ok());
      REQUIRE(got->str() == values[i]);
    } else {
      REQUIRE(got.status().code() == Code::kNotFound);  // deleted, or expired
    }
  }
}

TEST_CASE(
    "replicas: a node stopped past its lease stops serving when resumed and never takes a "
    "write for a slot it lost",
    "[replicas]") {
  REQUIRE(etcd_available());
  Cluster cl(2);
  for (uint32_t id : {1u, 2u, 3u}) cl.start(id);
  auto c = cl.client();
  wait_replicated(*c, {1, 2, 3});
  // A client that knows node 2 only, and the map where node 2 owns a third of the slots.
  const std::string node2 = cl.node(2).address();
  auto stale = cl.client(ReadFrom::kPrimary, node2 + "," + cl.node(1).address());
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 20 && i < 100000; ++i) {
    std::string k = fmt::format("p{}", i);
    auto where = stale->locate(k);
    if (!where.is_ok()) {
      REQUIRE(stale->put(k, "x").is_ok());
      where = stale->locate(k);
    }
    REQUIRE(where.is_ok());
    if (where->node_id == 2) keys.push_back(k);
  }
  REQUIRE(keys.size() == 20);
  for (const auto& k : keys) REQUIRE(stale->put(k, versioned(k, 1, 100)).is_ok());
  RawRpc raw(node2);
  v1::StatsReply before;
  REQUIRE(raw.call(&v1::KvCache::Stub::Stats, v1::StatsRequest(), &before).ok());

  REQUIRE(::kill(cl.node(2).pid(), SIGSTOP) == 0);
  auto others = cl.client(ReadFrom::kPrimary, cl.node(1).address() + "," + cl.node(3).address());
  wait_replicated(*others, {1, 3});
  for (const auto& k : keys) REQUIRE(others->put(k, versioned(k, 2, 100)).is_ok());
  REQUIRE(::kill(cl.node(2).pid(), SIGCONT) == 0);
  // At once: the stale client routes to node 2 first; node 2 must refuse (its lease is over by
  // its own clock), so the write lands at the new owner.
  for (const auto& k : keys) {
    Status s = stale->put(k, versioned(k, 3, 100));
    CHECK((s.is_ok() || s.code() == Code::kUnavailable));
  }
  v1::StatsReply after;
  REQUIRE(raw.call(&v1::KvCache::Stub::Stats, v1::StatsRequest(), &after).ok());
  CHECK(after.puts() == before.puts());  // node 2 applied none of them
  for (const auto& k : keys) {
    auto got = others->get(k);
    REQUIRE(got.is_ok());
    int64_t v = version_of(k, got->str(), 100);
    REQUIRE(v >= 2);  // never the value node 2 held before the partition
  }
}

}  // namespace kvrdma::testing
