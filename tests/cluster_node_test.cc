// The cluster agent (lib/server/cluster_node.*) end to end in one process: kv-server nodes on
// loopback ports over the mock transport, sharing one MemoryMetaStore in place of etcd. Every
// wait polls a condition with a bounded deadline.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster/meta_store.h"
#include "cluster/slot_map.h"
#include "etcd_process.h"
#include "kvrdma/client.h"
#include "kvrdma/server.h"
#include "server/cluster_node.h"

using kvrdma::Code;
using kvrdma::Server;
using kvrdma::ServerOptions;
using kvrdma::cluster::kNoNode;
using kvrdma::cluster::kSlots;
using kvrdma::cluster::MemoryMetaStore;
using kvrdma::cluster::slot_of;
using kvrdma::cluster::SlotMap;
using kvrdma::server::ServerAccess;
using kvrdma::server::ServerCore;
using namespace std::chrono_literals;

namespace {

// Polls `pred` every 5 ms until it holds or `limit` passes.
template <typename Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (int i = 0; i < 1'000'000; ++i) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

struct TestCluster {
  std::shared_ptr<MemoryMetaStore> meta = MemoryMetaStore::create();
  std::map<uint32_t, std::unique_ptr<Server>> nodes;  // live ones
  uint64_t lease_ms = 2000;
  std::string etcd;  // when set, nodes use this real etcd instead of `meta`

  ServerOptions options(uint32_t id) const {
    ServerOptions o;
    o.listen_addr = "127.0.0.1:0";
    o.memory_bytes = 16 << 20;
    o.node_id = id;
    o.log_level = kvrdma::LogLevel::kWarn;
    o.inline_threshold = 1024;  // most test values go by transport write
    o.cluster = "test";
    o.node_lease_ms = lease_ms;
    o.sweep_interval_ms = 100;
    return o;
  }
  kvrdma::Result<std::unique_ptr<Server>> try_start(uint32_t id) {
    if (etcd.empty()) return ServerAccess::start(options(id), meta);
    ServerOptions o = options(id);
    o.etcd_endpoints = etcd;
    return Server::start(o);
  }
  Server& start(uint32_t id) {
    auto s = try_start(id);
    INFO(s.status().to_string());
    REQUIRE(s.is_ok());
    return *(nodes[id] = std::move(*s));
  }
  void stop(uint32_t id) {
    nodes.at(id)->shutdown();
    nodes.erase(id);
  }
  ServerCore& core(uint32_t id) { return ServerAccess::core(*nodes.at(id)); }
  kvrdma::server::ClusterNode& agent(uint32_t id) {
    return *ServerAccess::cluster_node(*nodes.at(id));
  }
  std::shared_ptr<const SlotMap> map(uint32_t id) { return core(id).cluster->map(); }

  // Every live node serves by the same map: it names exactly the live nodes, moves nothing, and
  // gives each of them its fair share of the slots.
  bool converged() {
    if (nodes.empty()) return false;
    auto m = map(nodes.begin()->first);
    if (m->epoch == 0 || m->moving() || m->nodes.size() != nodes.size()) return false;
    for (auto& [id, s] : nodes) {
      if (map(id)->epoch != m->epoch || m->node(id) == nullptr) return false;
      const size_t n = m->slots_of(id);
      if (n != kSlots / nodes.size() && n != kSlots / nodes.size() + 1) return false;
    }
    return true;
  }
  uint64_t epoch() { return map(nodes.begin()->first)->epoch; }
  uint64_t moved_out() {
    uint64_t n = 0;
    for (auto& [id, s] : nodes) n += core(id).counters.keys_moved_out.load();
    return n;
  }
  int controllers() {
    int n = 0;
    for (auto& [id, s] : nodes) n += agent(id).is_controller();
    return n;
  }

  // Values kept by the test: key -> bytes, stored at the key's owner.
  std::map<std::string, std::string> values;
  void put_values(int count, uint64_t ttl_ms = 0) {
    auto m = map(nodes.begin()->first);
    for (int i = 0; i < count; ++i) {
      std::string key = "key-" + std::to_string(values.size());
      // Mostly above the inline threshold (a transport write), some small, a few large.
      size_t len = i % 10 == 0 ? 200'000 : i % 3 == 0 ? 100 : 3000;
      std::string v(len, '\0');
      for (size_t b = 0; b < len; ++b) v[b] = static_cast<char>((b * 131 + i * 7) & 0xff);
      const uint32_t owner = m->owner_of(slot_of(key));
      REQUIRE(nodes.count(owner) == 1);
      REQUIRE(core(owner).store->put(key, v, std::chrono::milliseconds(ttl_ms)).is_ok());
      values[key] = v;
    }
  }
  std::string read(uint32_t id, const std::string& key) {
    auto r = core(id).store->get(key);
    if (!r) return "<" + std::string(kvrdma::code_name(r.status().code())) + ">";
    return std::string(reinterpret_cast<const char*>(r->data()), r->size());
  }
  // Each value is whole at its owner in the current map and nowhere else.
  void check_values_at_owners() {
    auto m = map(nodes.begin()->first);
    for (auto& [key, v] : values) {
      const uint32_t owner = m->owner_of(slot_of(key));
      INFO("key " << key << " owner " << owner);
      REQUIRE(nodes.count(owner) == 1);
      CHECK(read(owner, key) == v);
      for (auto& [id, s] : nodes) {
        if (id != owner) CHECK(read(id, key) == "<NOT_FOUND>");
      }
    }
  }
};

}  // namespace

TEST_CASE("three nodes converge to one balanced map with one controller", "[cluster_node]") {
  TestCluster c;
  for (uint32_t id = 0; id < 3; ++id) c.start(id);
  REQUIRE(wait_until([&] { return c.converged(); }));
  auto m = c.map(0);
  for (uint32_t s = 0; s < kSlots; ++s) REQUIRE(m->owner_of(s) != kNoNode);
  CHECK(c.controllers() == 1);
  CHECK(m->cluster == "test");
  for (auto& [id, s] : c.nodes) {
    CHECK(m->node(id)->address == s->address());
    CHECK(m->node(id)->state == "active");
    CHECK(c.core(id).cluster->serving());
  }
}

TEST_CASE("a joining node receives the values of its slots; a leaving one hands them back",
          "[cluster_node]") {
  TestCluster c;
  for (uint32_t id = 0; id < 3; ++id) c.start(id);
  REQUIRE(wait_until([&] { return c.converged(); }));
  c.put_values(300);
  c.put_values(30, 600'000);  // with a TTL: it travels with the value
  const auto before = c.map(0);

  c.start(3);
  REQUIRE(wait_until([&] { return c.converged() && c.nodes.size() == 4; }));
  auto after = c.map(0);
  CHECK(after->epoch > before->epoch);
  uint64_t changed = 0;
  for (auto& [key, v] : c.values) {
    changed += before->owner_of(slot_of(key)) != after->owner_of(slot_of(key));
  }
  REQUIRE(changed > 0);
  c.check_values_at_owners();
  CHECK(c.moved_out() == changed);
  // Values above the inline threshold reached node 3 by transport write into its pool.
  CHECK(c.core(3).counters.bytes_put_committed.load() > 0);
  for (auto& [key, v] : c.values) {
    if (after->owner_of(slot_of(key)) != 3 || std::stoi(key.substr(4)) < 300) continue;
    auto ref = c.core(3).store->get(key);
    REQUIRE(ref.is_ok());
    auto left = c.core(3).store->ttl_left(*ref);
    REQUIRE(left.has_value());
    CHECK(left->count() > 0);
    CHECK(left->count() <= 600'000);
  }

  const uint64_t moved_before_leave = c.moved_out();
  REQUIRE(c.nodes.at(3)->leave(20s).is_ok());
  REQUIRE(c.core(3).store->stats().keys == 0);  // everything went over before it left
  c.stop(3);
  REQUIRE(wait_until([&] { return c.converged() && c.nodes.size() == 3; }));
  c.check_values_at_owners();
  CHECK(c.moved_out() >= moved_before_leave);
}

TEST_CASE("a node whose lease expired is fenced; its slots go to the others", "[cluster_node]") {
  TestCluster c;
  c.lease_ms = 1000;
  for (uint32_t id = 0; id < 3; ++id) c.start(id);
  REQUIRE(wait_until([&] { return c.converged(); }));
  c.put_values(60);
  const auto before = c.map(0);
  // A node that is not the controller: the controller sees its registration vanish and hands
  // its slots on at once, so the node finds the map moved on when it learns its lease is gone.
  uint32_t victim = 0;
  while (victim < 3 && c.agent(victim).is_controller()) ++victim;
  REQUIRE(victim < 3);
  const auto old_lease = c.agent(victim).lease();
  // Past the controller's takeover grace, so it reassigns the victim's slots at once.
  REQUIRE(wait_until([&] {
    for (uint32_t id = 0; id < 3; ++id) {
      if (c.agent(id).is_controller()) return !c.agent(id).in_takeover_grace();
    }
    return false;
  }));

  c.meta->expire_lease(old_lease);
  // Fenced until the cluster has forgotten it (at least one keepalive period): poll finely.
  REQUIRE(wait_until([&] { return c.agent(victim).fenced() && !c.core(victim).cluster->serving(); },
                     10s));
  CHECK(c.core(victim).store->stats().keys == 0);  // what it held is dropped, not served stale
  // It registers again as a new node, and the cluster rebalances over all three.
  REQUIRE(wait_until([&] {
    return !c.agent(victim).fenced() && c.agent(victim).lease() != old_lease && c.converged();
  }));
  CHECK(c.core(victim).cluster->serving());
  CHECK(c.epoch() >= before->epoch + 2);
  auto m = c.map(0);
  for (auto& [key, v] : c.values) {
    const uint32_t was = before->owner_of(slot_of(key));
    const uint32_t now = m->owner_of(slot_of(key));
    INFO("key " << key << " was at " << was << ", now at " << now);
    if (was == victim) {
      for (auto& [id, s] : c.nodes) CHECK(c.read(id, key) == "<NOT_FOUND>");  // lost: a cache
    } else {
      CHECK(c.read(now, key) == v);
    }
  }
}

TEST_CASE("leases that expired while the store was unreachable: the map did not move, values kept",
          "[cluster_node]") {
  TestCluster c;
  c.lease_ms = 1000;
  for (uint32_t id = 0; id < 3; ++id) c.start(id);
  REQUIRE(wait_until([&] { return c.converged(); }));
  c.put_values(60);
  const auto before = c.map(0);
  // etcd down past the leases: when it is back, every lease is gone at once.
  c.meta->set_unreachable(true);
  std::vector<kvrdma::cluster::LeaseId> old;
  for (uint32_t id = 0; id < 3; ++id) old.push_back(c.agent(id).lease());
  for (kvrdma::cluster::LeaseId l : old) c.meta->expire_lease(l);
  c.meta->set_unreachable(false);
  // Every node registers again under a new lease; nobody was handed another's slots.
  REQUIRE(wait_until([&] {
    for (uint32_t id = 0; id < 3; ++id) {
      if (c.agent(id).lease() == old[id] || c.agent(id).fenced()) return false;
    }
    return c.converged();
  }));
  auto m = c.map(0);
  CHECK(m->owner == before->owner);
  for (auto& [key, v] : c.values) CHECK(c.read(m->owner_of(slot_of(key)), key) == v);
}

TEST_CASE("writes and deletes acknowledged while slots move are never lost", "[cluster_node]") {
  TestCluster c;
  for (uint32_t id = 0; id < 2; ++id) c.start(id);
  REQUIRE(wait_until([&] { return c.converged(); }));
  // Keys node 0 owns; a client writes and deletes them during the join.
  auto m = c.map(0);
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 120 && i < 100'000; ++i) {
    std::string k = "w-" + std::to_string(i);
    if (m->owner_of(slot_of(k)) == 0) keys.push_back(k);
  }
  REQUIRE(keys.size() == 120);
  kvrdma::ClientOptions co;
  co.server_addr = c.nodes.at(0)->address();
  co.buffer_bytes = 8 << 20;
  auto client = kvrdma::Client::connect(co);
  REQUIRE(client.is_ok());
  std::map<std::string, std::string> acked;  // key -> last acknowledged value ("" : deleted)
  std::set<std::string> refused;             // handed off: node 0 no longer takes them
  auto value_for = [](const std::string& k, int round) {
    // Above the inline threshold on odd rounds: two-phase PUTs race the mover too.
    return k + "#" + std::to_string(round) + std::string(round % 2 ? 2000 : 10, 'x');
  };
  for (const auto& k : keys) {
    REQUIRE((*client)->put(k, value_for(k, 0)).is_ok());
    acked[k] = value_for(k, 0);
  }
  c.start(2);
  for (int round = 1; round < 200 && !(c.converged() && c.nodes.size() == 3); ++round) {
    for (size_t i = 0; i < keys.size(); ++i) {
      const std::string& k = keys[i];
      if (refused.count(k)) continue;
      const bool del = (i + round) % 7 == 0;
      kvrdma::Status s = del ? (*client)->del(k) : (*client)->put(k, value_for(k, round));
      if (s.is_ok() || (del && s.code() == Code::kNotFound)) {
        acked[k] = del ? "" : value_for(k, round);
      } else {
        // Refused (the cluster was changing): nothing was applied, the last ack stands. Any
        // other failure leaves the outcome open: that key is not checked.
        INFO(s.to_string());
        CHECK((s.code() == Code::kFailedPrecondition || s.code() == Code::kUnavailable));
        if (s.code() != Code::kFailedPrecondition) acked.erase(k);
        refused.insert(k);
      }
    }
  }
  REQUIRE(wait_until([&] { return c.converged() && c.nodes.size() == 3; }));
  auto final_map = c.map(0);
  size_t moved = 0;
  for (const auto& [k, v] : acked) {
    const uint32_t owner = final_map->owner_of(slot_of(k));
    moved += owner != 0;
    INFO("key " << k << " owner " << owner);
    CHECK(c.read(owner, k) == (v.empty() ? "<NOT_FOUND>" : v));
    for (auto& [id, s] : c.nodes) {
      if (id != owner) CHECK(c.read(id, k) == "<NOT_FOUND>");
    }
  }
  CHECK(moved > 0);
  CHECK(acked.size() >= keys.size() / 2);
}

TEST_CASE("a second node with a live node's id is refused, naming the first", "[cluster_node]") {
  TestCluster c;
  Server& first = c.start(7);
  REQUIRE(wait_until([&] { return c.converged(); }));
  auto second = c.try_start(7);
  REQUIRE_FALSE(second.is_ok());
  CHECK(second.status().code() == Code::kFailedPrecondition);
  CHECK_THAT(second.status().message(), Catch::Contains(first.address()));
  CHECK_THAT(second.status().message(), Catch::Contains("--node-id"));
  CHECK(c.map(7)->slots_of(7) == kSlots);  // the first keeps serving
}

TEST_CASE("when the controller stops another node takes over and publishes maps",
          "[cluster_node]") {
  TestCluster c;
  for (uint32_t id = 0; id < 3; ++id) c.start(id);
  REQUIRE(wait_until([&] { return c.converged() && c.controllers() == 1; }));
  uint32_t controller = kNoNode;
  for (auto& [id, s] : c.nodes) {
    if (c.agent(id).is_controller()) controller = id;
  }
  const uint64_t epoch = c.epoch();
  c.stop(controller);
  REQUIRE(wait_until([&] { return c.converged() && c.controllers() == 1; }));
  CHECK(c.epoch() > epoch);
  CHECK(c.map(c.nodes.begin()->first)->controller != controller);
  c.start(controller);  // and the new controller still acts on changes
  REQUIRE(wait_until([&] { return c.converged() && c.nodes.size() == 3; }));
}

TEST_CASE("while etcd is unreachable nodes serve on the last map; joins proceed after",
          "[cluster_node]") {
  TestCluster c;
  c.lease_ms = 3000;  // the outage below stays well inside one lease
  for (uint32_t id = 0; id < 2; ++id) c.start(id);
  REQUIRE(wait_until([&] { return c.converged(); }));
  c.put_values(20);
  const uint64_t epoch = c.epoch();

  c.meta->set_unreachable(true);
  auto refused = c.try_start(2);  // a join has to wait for etcd
  REQUIRE_FALSE(refused.is_ok());
  CHECK(refused.status().code() == Code::kUnavailable);
  // Both agents keep trying (keepalives every second, ranges every 100 ms).
  const uint64_t requests = c.meta->requests();
  REQUIRE(wait_until([&] { return c.meta->requests() >= requests + 20; }, 10s));
  for (auto& [id, s] : c.nodes) {
    CHECK(c.map(id)->epoch == epoch);
    CHECK(c.core(id).cluster->serving());
    CHECK_FALSE(c.agent(id).fenced());
  }
  c.check_values_at_owners();

  c.meta->set_unreachable(false);
  c.start(2);
  REQUIRE(wait_until([&] { return c.converged() && c.nodes.size() == 3; }));
  CHECK(c.epoch() > epoch);
  c.check_values_at_owners();
}

TEST_CASE("cluster mode start-up errors say what to give", "[cluster_node]") {
  ServerOptions o;
  o.listen_addr = "127.0.0.1:0";
  o.memory_bytes = 1 << 20;
  o.cluster = "test";
  auto no_etcd = Server::start(o);
  REQUIRE_FALSE(no_etcd.is_ok());
  CHECK_THAT(no_etcd.status().message(),
             Catch::Contains("ServerOptions::etcd_endpoints / etcd-endpoints"));

  o.listen_addr = "0.0.0.0:0";
  auto wildcard = ServerAccess::start(o, MemoryMetaStore::create());
  REQUIRE_FALSE(wildcard.is_ok());
  CHECK_THAT(wildcard.status().message(),
             Catch::Contains("ServerOptions::advertise_addr / advertise-addr"));
}

TEST_CASE("a DELETE forwarded to the next owner removes the key there", "[cluster_node]") {
  TestCluster c;
  for (uint32_t id = 0; id < 2; ++id) c.start(id);
  REQUIRE(wait_until([&] { return c.converged(); }));
  // Keys node 1 serves (a forwarded DELETE goes to a node that serves the slot).
  auto m = c.map(0);
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 3 && i < 1000; ++i) {
    std::string k = "fwd-" + std::to_string(i);
    if (m->owner_of(slot_of(k)) == 1) keys.push_back(k);
  }
  REQUIRE(keys.size() == 3);
  REQUIRE(c.core(1).store->put(keys[0], "value", 0ms).is_ok());
  REQUIRE(c.core(1).store->put(keys[1], "value", 0ms).is_ok());
  kvrdma::v1::WrongOwner to;
  to.set_owner_id(1);
  to.set_owner_address(c.nodes.at(1)->address());
  to.set_epoch(c.epoch());
  auto deadline = std::chrono::steady_clock::now() + 5s;
  REQUIRE(c.agent(0).forward_delete(keys[0], to, deadline).is_ok());
  CHECK(c.read(1, keys[0]) == "<NOT_FOUND>");
  CHECK(c.read(1, keys[1]) == "value");
  REQUIRE(c.agent(0).forward_delete(keys[2], to, deadline).is_ok());  // absent there: fine
}

TEST_CASE("over a real etcd: nodes converge, a joiner gets its values, a leaver hands them back",
          "[cluster_node][etcd]") {
  if (!kvrdma::testing::etcd_available()) {
    WARN("etcd is not installed (/usr/bin/etcd): etcd case skipped");
    return;
  }
  auto etcd = kvrdma::testing::EtcdProcess::start();
  REQUIRE(etcd.is_ok());
  TestCluster c;
  c.etcd = (*etcd)->endpoint();
  for (uint32_t id = 0; id < 2; ++id) c.start(id);
  REQUIRE(wait_until([&] { return c.converged() && c.controllers() == 1; }));
  c.put_values(100);
  c.start(2);
  REQUIRE(wait_until([&] { return c.converged() && c.nodes.size() == 3; }));
  c.check_values_at_owners();
  CHECK(c.core(2).counters.keys_moved_in.load() > 0);
  REQUIRE(c.nodes.at(0)->leave(20s).is_ok());
  CHECK(c.core(0).store->stats().keys == 0);
  c.stop(0);
  REQUIRE(wait_until([&] { return c.converged() && c.nodes.size() == 2; }));
  c.check_values_at_owners();
  c.nodes.clear();  // before etcd stops
}
