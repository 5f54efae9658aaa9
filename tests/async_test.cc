// The pipelined client API (include/kvrdma/client.h: Pending, Client::Batch) against in-process
// kv-servers over the mock transport: a batch answers byte for byte and rings each node's
// doorbell once; in cluster mode (nodes sharing one MemoryMetaStore in place of etcd) async
// requests ride the channel of their key's owner, and a slot that moves under them still
// answers right.
#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cluster/meta_store.h"
#include "cluster/slot_map.h"
#include "kvrdma/client.h"
#include "kvrdma/server.h"
#include "server/cluster_node.h"
#include "store/store.h"

namespace {

using kvrdma::ChannelUse;
using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using kvrdma::Pending;
using kvrdma::Server;
using kvrdma::ServerOptions;
using kvrdma::cluster::slot_of;
using kvrdma::server::ServerAccess;
using namespace std::chrono_literals;

std::string pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7) & 0xff);
  return s;
}

std::unique_ptr<Client> connect(const std::string& addrs, bool channel = true) {
  ClientOptions o;
  o.server_addr = addrs;
  o.buffer_bytes = 8 << 20;
  o.timeout_ms = 20000;
  o.transport.channel = channel;
  auto c = Client::connect(o);
  INFO(c.status().to_string());
  REQUIRE(c.is_ok());
  return std::move(c).value();
}

// Requests and doorbells per node since `before` (both from channel_use()).
std::map<std::string, ChannelUse> use_since(const std::vector<ChannelUse>& before,
                                            const std::vector<ChannelUse>& after) {
  std::map<std::string, ChannelUse> out;
  for (const auto& a : after) out[a.address] = a;
  for (const auto& b : before) {
    if (!out.count(b.address)) continue;
    out[b.address].requests -= b.requests;
    out[b.address].doorbells -= b.doorbells;
  }
  return out;
}

}  // namespace

TEST_CASE("batch: gets and puts answer byte for byte, one doorbell for the whole batch",
          "[async]") {
  ServerOptions so;
  so.listen_addr = "127.0.0.1:0";
  so.memory_bytes = 32 << 20;
  auto server = Server::start(so);
  REQUIRE(server.is_ok());
  auto c = connect((*server)->address());
  constexpr int kN = 40;  // fewer than the channel's 64 slots

  auto before = c->channel_use();
  REQUIRE(before.size() == 1);
  auto b = c->batch();
  for (int i = 0; i < kN; ++i)
    b.put(fmt::format("k{}", i), pattern(10 + i * 97, i), i == 3 ? 60000 : 0);
  CHECK(b.size() == kN);
  std::vector<Pending> puts = b.submit();
  CHECK(b.size() == 0);
  auto used = use_since(before, c->channel_use());
  CHECK(used.begin()->second.requests == kN);  // every PUT rode the channel
  CHECK(used.begin()->second.doorbells == 1);
  REQUIRE(puts.size() == kN);
  for (auto& p : puts) {
    auto r = p.wait();
    INFO(r.status().to_string());
    REQUIRE(r.is_ok());
    CHECK(r->empty());
  }

  // A value above what a slot carries: it is asked for on the channel and fetched the
  // blocking way at wait().
  const std::string big = pattern(100000, 9);
  REQUIRE(c->put("big", big).is_ok());
  before = c->channel_use();
  for (int i = kN - 1; i >= 0; --i) b.get(fmt::format("k{}", i));
  b.get("absent").get("big");
  std::vector<Pending> gets = b.submit();
  used = use_since(before, c->channel_use());
  CHECK(used.begin()->second.requests == kN + 2);
  CHECK(used.begin()->second.doorbells == 1);
  REQUIRE(gets.size() == kN + 2);
  for (int j = 0; j < kN; ++j) {
    const int i = kN - 1 - j;
    auto r = gets[j].wait();
    INFO("k" << i << ": " << r.status().to_string());
    REQUIRE(r.is_ok());
    CHECK(*r == pattern(10 + i * 97, i));
  }
  CHECK(gets[kN].wait().status().code() == Code::kNotFound);
  auto got_big = gets[kN + 1].wait();
  REQUIRE(got_big.is_ok());
  CHECK(*got_big == big);
  CHECK(gets[0].wait().status().code() == Code::kFailedPrecondition);  // once only

  SECTION("more requests than slots: all answered, the later ones posted as slots free") {
    before = c->channel_use();
    for (int i = 0; i < 150; ++i) b.get(fmt::format("k{}", i % kN));
    auto many = b.submit();
    used = use_since(before, c->channel_use());
    CHECK(used.begin()->second.requests == 150);
    CHECK(used.begin()->second.doorbells < 150);
    for (int i = 0; i < 150; ++i) {
      auto r = many[i].wait();
      REQUIRE(r.is_ok());
      CHECK(*r == pattern(10 + (i % kN) * 97, i % kN));
    }
  }
  SECTION("dropped without wait: the late answers are never taken for the next batch") {
    for (int i = 0; i < kN; ++i) b.get(fmt::format("k{}", i));
    b.submit();  // every Pending dropped at once
    for (int i = 0; i < kN; ++i) b.get(fmt::format("k{}", (i + 1) % kN));
    auto next = b.submit();
    for (int i = 0; i < kN; ++i) {
      auto r = next[i].wait();
      REQUIRE(r.is_ok());
      CHECK(*r == pattern(10 + ((i + 1) % kN) * 97, (i + 1) % kN));
    }
  }
  SECTION("without the channel a batch runs at submit and answers the same") {
    auto plain = connect((*server)->address(), false);
    CHECK(plain->channel_use().empty());
    auto pb = plain->batch();
    pb.put("plain", "value").get("plain").get("k7").get("absent");
    auto ps = pb.submit();
    REQUIRE(ps[0].wait().is_ok());
    CHECK(*ps[1].wait() == "value");
    CHECK(*ps[2].wait() == pattern(10 + 7 * 97, 7));
    CHECK(ps[3].wait().status().code() == Code::kNotFound);
  }
}

namespace {

// Cluster nodes in this process over one MemoryMetaStore.
struct Nodes {
  std::shared_ptr<kvrdma::cluster::MemoryMetaStore> meta =
      kvrdma::cluster::MemoryMetaStore::create();
  std::map<uint32_t, std::unique_ptr<Server>> live;

  Server& start(uint32_t id) {
    ServerOptions o;
    o.listen_addr = "127.0.0.1:0";
    o.memory_bytes = 32 << 20;
    o.node_id = id;
    o.log_level = kvrdma::LogLevel::kWarn;
    o.cluster = "async";
    o.node_lease_ms = 2000;
    auto s = ServerAccess::start(o, meta);
    INFO(s.status().to_string());
    REQUIRE(s.is_ok());
    return *(live[id] = std::move(*s));
  }
  std::shared_ptr<const kvrdma::cluster::SlotMap> map(uint32_t id) {
    return ServerAccess::core(*live.at(id)).cluster->map();
  }
  // Every live node serves by one map that names exactly them and moves nothing.
  bool converged() {
    auto m = map(live.begin()->first);
    if (m->epoch == 0 || m->moving() || m->nodes.size() != live.size()) return false;
    for (auto& [id, s] : live) {
      if (map(id)->epoch != m->epoch || m->slots_of(id) == 0) return false;
    }
    return true;
  }
  // Waits for convergence: re-checks on every change in the store, or at least every 200 ms
  // (a node adopts a map a little after it is published); at most 30 s.
  bool wait_converged() {
    const auto end = std::chrono::steady_clock::now() + 30s;
    int64_t rev = 0;
    for (int i = 0; i < 100000 && std::chrono::steady_clock::now() < end; ++i) {
      if (converged()) return true;
      auto r = meta->wait_for_change("", rev, 200ms);
      if (r) rev = *r;
    }
    return converged();
  }
  std::string addresses() const {
    std::string out;
    for (const auto& [id, s] : live) {
      if (!out.empty()) out += ',';
      out += s->address();
    }
    return out;
  }
  std::string stored(uint32_t id, const std::string& key) {
    auto r = ServerAccess::core(*live.at(id)).store->get(key);
    if (!r) return "<" + std::string(kvrdma::code_name(r.status().code())) + ">";
    return std::string(reinterpret_cast<const char*>(r->data()), r->size());
  }
};

}  // namespace

TEST_CASE("async in a 2-node cluster: each key rides its owner's channel, one doorbell per node",
          "[async][cluster]") {
  Nodes n;
  n.start(1);
  n.start(2);
  REQUIRE(n.wait_converged());
  auto c = connect(n.addresses());
  auto m = n.map(1);
  std::map<uint32_t, int> owned;  // keys per owner
  constexpr int kN = 50;
  for (int i = 0; i < kN; ++i) ++owned[m->owner_of(slot_of(fmt::format("c{}", i)))];
  REQUIRE(owned.size() == 2);  // both nodes own some of the keys

  // Opens both sessions (a session opens on first use), so the counts below are the batch's.
  for (auto& [id, s] : n.live) {
    for (int i = 0; i < kN; ++i) {
      if (m->owner_of(slot_of(fmt::format("c{}", i))) == id) {
        REQUIRE(c->put_async(fmt::format("c{}", i), "first").wait().is_ok());
        break;
      }
    }
  }
  auto before = c->channel_use();
  REQUIRE(before.size() == 2);
  auto b = c->batch();
  for (int i = 0; i < kN; ++i) b.put(fmt::format("c{}", i), pattern(100 + i * 50, i));
  auto puts = b.submit();
  auto used = use_since(before, c->channel_use());
  for (auto& [id, s] : n.live) {
    INFO("node " << id);
    REQUIRE(used.count(s->address()) == 1);
    CHECK(used[s->address()].requests == static_cast<uint64_t>(owned[id]));
    CHECK(used[s->address()].doorbells == 1);
  }
  for (auto& p : puts) REQUIRE(p.wait().is_ok());
  for (int i = 0; i < kN; ++i) {
    const std::string key = fmt::format("c{}", i);
    const uint32_t owner = m->owner_of(slot_of(key));
    INFO(key << " owner " << owner);
    CHECK(n.stored(owner, key) == pattern(100 + i * 50, i));
    CHECK(n.stored(owner == 1 ? 2 : 1, key) == "<NOT_FOUND>");
  }

  before = c->channel_use();
  std::vector<Pending> gets;
  for (int i = 0; i < kN; ++i) gets.push_back(c->get_async(fmt::format("c{}", i)));
  used = use_since(before, c->channel_use());
  for (auto& [id, s] : n.live)
    CHECK(used[s->address()].requests == static_cast<uint64_t>(owned[id]));
  for (int i = 0; i < kN; ++i) {
    auto r = gets[i].wait();
    REQUIRE(r.is_ok());
    CHECK(*r == pattern(100 + i * 50, i));
  }
}

TEST_CASE(
    "async in a cluster: slots that move between submit and wait, or before a submit with "
    "an old map, still answer right",
    "[async][cluster]") {
  Nodes n;
  n.start(1);
  n.start(2);
  REQUIRE(n.wait_converged());
  auto c = connect(n.addresses());
  constexpr int kN = 120;
  for (int i = 0; i < kN; ++i) {
    REQUIRE(c->put(fmt::format("m{}", i), pattern(200 + i, i)).is_ok());
  }
  const auto old_map = n.map(1);

  // Submitted before the move, waited for after it.
  auto b = c->batch();
  for (int i = 0; i < kN; ++i) b.get(fmt::format("m{}", i));
  auto early = b.submit();
  n.start(3);
  REQUIRE(n.wait_converged());
  const auto new_map = n.map(1);
  int changed = 0;
  for (int i = 0; i < kN; ++i) {
    const uint32_t slot = slot_of(fmt::format("m{}", i));
    changed += old_map->owner_of(slot) != new_map->owner_of(slot);
  }
  REQUIRE(changed > 0);
  for (int i = 0; i < kN; ++i) {
    auto r = early[i].wait();
    INFO("m" << i << ": " << r.status().to_string());
    REQUIRE(r.is_ok());
    CHECK(*r == pattern(200 + i, i));
  }

  // The client still routes by the old map: every PUT goes to nodes 1 and 2 (it does not know
  // node 3 yet); the old owners refuse the moved keys and the blocking way follows the refusal.
  auto before = c->channel_use();
  for (int i = 0; i < kN; ++i) b.put(fmt::format("m{}", i), pattern(300 + i, i + 1));
  auto puts = b.submit();
  auto used = use_since(before, c->channel_use());
  CHECK(used.count(n.live.at(3)->address()) == 0);
  CHECK(used[n.live.at(1)->address()].requests + used[n.live.at(2)->address()].requests == kN);
  for (auto& p : puts) {
    auto r = p.wait();
    INFO(r.status().to_string());
    REQUIRE(r.is_ok());
  }
  // The refusals made the client learn the new map and open a session (and channel) with node 3.
  used = use_since(before, c->channel_use());
  CHECK(used.count(n.live.at(3)->address()) == 1);
  for (int i = 0; i < kN; ++i) b.get(fmt::format("m{}", i));
  auto late = b.submit();
  for (int i = 0; i < kN; ++i) {
    const std::string key = fmt::format("m{}", i);
    auto r = late[i].wait();
    INFO(key << ": " << r.status().to_string());
    REQUIRE(r.is_ok());
    CHECK(*r == pattern(300 + i, i + 1));
    CHECK(n.stored(new_map->owner_of(slot_of(key)), key) == pattern(300 + i, i + 1));
  }
}
