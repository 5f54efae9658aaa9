// Replicas through the cluster agent in one process (lib/server/cluster_node.*, replication.*,
// replica_filler.*): kv-server nodes on loopback ports over the mock transport sharing one
// MemoryMetaStore in place of etcd. A node's death is its lease ended by the store
// (expire_lease) and the node stopped, as when a process is killed. Waits poll a condition with
// a bounded deadline.
#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cluster/meta_store.h"
#include "cluster/slot_map.h"
#include "kvrdma/client.h"
#include "kvrdma/server.h"
#include "server/cluster_node.h"
#include "server/peer_session.h"
#include "server/replication.h"
#include "store/store.h"

namespace kvrdma::server {
namespace {

using namespace std::chrono_literals;
using cluster::kNoNode;
using cluster::kSlots;

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

struct Nodes {
  std::shared_ptr<cluster::MemoryMetaStore> meta = cluster::MemoryMetaStore::create();
  std::map<uint32_t, std::unique_ptr<Server>> live;

  Server& start(uint32_t id, uint32_t replicas) {
    ServerOptions o;
    o.listen_addr = "127.0.0.1:0";
    o.memory_bytes = 32 << 20;
    o.node_id = id;
    o.log_level = LogLevel::kWarn;
    o.inline_threshold = 1024;  // values above it go node to node by transport write
    o.cluster = "replicas";
    o.node_lease_ms = 2000;
    o.replicas = replicas;
    auto s = ServerAccess::start(o, meta);
    INFO(s.status().to_string());
    REQUIRE(s.is_ok());
    return *(live[id] = std::move(*s));
  }
  // Dies: its lease ends in the store and it stops answering.
  void kill(uint32_t id) {
    meta->expire_lease(ServerAccess::cluster_node(*live.at(id))->lease());
    live.at(id)->shutdown();
    live.erase(id);
  }
  std::shared_ptr<const cluster::SlotMap> map(uint32_t id) {
    return ServerAccess::core(*live.at(id)).cluster->map();
  }
  // Every live node serves by one map in which every slot has a live owner and `copies` - 1
  // filled replicas on live nodes.
  bool replicated(uint32_t copies) {
    auto m = map(live.begin()->first);
    for (auto& [id, s] : live) {
      if (map(id)->epoch != m->epoch) return false;
    }
    if (m->owner.empty() || m->moving()) return false;
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (live.count(m->owner_of(s)) == 0) return false;
      uint32_t ready = 0;
      for (uint32_t i = 0; i < m->seats(); ++i) {
        ready += m->replica_ready_of(s, i) && live.count(m->replica_of(s, i)) > 0;
      }
      if (ready + 1 < copies) return false;
    }
    return true;
  }
  std::string addresses() const {
    std::string out;
    for (const auto& [id, s] : live) {
      if (!out.empty()) out += ',';
      out += s->address();
    }
    return out;
  }
};

std::unique_ptr<Client> connect(const std::string& addrs) {
  ClientOptions o;
  o.server_addr = addrs;
  o.buffer_bytes = 16 << 20;
  o.read_from = ReadFrom::kAny;
  auto c = Client::connect(o);
  REQUIRE(c.is_ok());
  return std::move(*c);
}

std::string value_of(int i) { return fmt::format("{:0>{}}", i, 100 + (i % 5) * 1000); }

// Each key's replica lags: it holds old_value(key) and has applied nothing of the key's slot.
template <typename OldValue>
void lag_replicas(Nodes& n, const std::vector<std::string>& keys, OldValue old_value) {
  auto m = n.map(n.live.begin()->first);
  for (const std::string& k : keys) {
    const uint32_t slot = cluster::slot_of(k);
    const uint32_t replica = m->replica_of(slot, 0);
    REQUIRE(replica != kNoNode);
    ServerCore& core = ServerAccess::core(*n.live.at(replica));
    REQUIRE(core.store->put(k, old_value(k), std::chrono::milliseconds(0)).is_ok());
    std::vector<bool> slots(kSlots, false);
    slots[slot] = true;
    core.replication->versions()
        .forget_where([&](std::string_view key) { return cluster::slot_of(key) == slot; }, &slots);
  }
}

}  // namespace

TEST_CASE(
    "replica node: the map fills its replicas, a dead node's slots are promoted in one "
    "epoch and re-replicated, no value lost",
    "[replicas]") {
  Nodes n;
  for (uint32_t id : {1u, 2u, 3u}) n.start(id, 2);
  REQUIRE(wait_until([&] { return n.replicated(2); }));
  auto c = connect(n.addresses());
  for (int i = 0; i < 400; ++i) REQUIRE(c->put(fmt::format("k{}", i), value_of(i)).is_ok());
  // Every copy holds every key of its slots: two copies of 400 keys over the three nodes.
  uint64_t keys = 0;
  for (auto& [id, s] : n.live) keys += s->stats().keys;
  CHECK(keys == 800u);

  const uint64_t before = n.map(1)->epoch;
  auto filled = [&] {
    uint64_t total = 0;
    for (auto& [id, s] : n.live) total += ServerAccess::cluster_node(*s)->keys_filled();
    return total;
  };
  const uint64_t filled_before = filled();
  // The keys that lose a copy with node 2: a fill copies each once more, on a survivor.
  uint64_t lost = 0;
  {
    auto m = n.map(1);
    for (int i = 0; i < 400; ++i) {
      const uint32_t slot = cluster::slot_of(fmt::format("k{}", i));
      lost += m->owner_of(slot) == 2 || m->replica_of(slot, 0) == 2;
    }
  }
  n.kill(2);
  REQUIRE(wait_until([&] {
    auto m = n.map(1);
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (m->owner_of(s) == 2 || m->owner_of(s) == kNoNode) return false;
    }
    return true;
  }));
  // Node 2's slots changed owner in one map: the first map after its death has none of them.
  auto first = n.map(1);
  CHECK(first->epoch > before);
  CHECK(first->slots_of(2) == 0u);
  REQUIRE(wait_until([&] { return n.replicated(2); }));
  keys = 0;
  for (auto& [id, s] : n.live) keys += s->stats().keys;
  CHECK(keys == 800u);  // re-replicated: two copies again, on the two survivors
  // Each key that lost a copy was copied again, and no key twice: maps that only mark other
  // replicas ready do not restart a finished fill. (A slot that moves after the death, from the
  // promoted owner to the other survivor, is filled once more at its old owner, which took a
  // replica seat: such a key may be copied though it lost nothing, but still once.)
  INFO("keys that lost a copy: " << lost);
  CHECK(filled() - filled_before >= lost);
  CHECK(filled() - filled_before <= 400u);
  // Each key at its owner and at its replica, by the map every node serves by.
  auto m = n.map(1);
  for (int i = 0; i < 400; ++i) {
    const std::string k = fmt::format("k{}", i);
    const uint32_t slot = cluster::slot_of(k), owner = m->owner_of(slot);
    const uint32_t replica = m->replica_of(slot, 0);
    INFO("key " << k << " slot " << slot << " owner " << owner << " replica " << replica);
    REQUIRE(ServerAccess::core(*n.live.at(owner)).store->get(k).is_ok());
    REQUIRE(replica != kNoNode);
    REQUIRE(ServerAccess::core(*n.live.at(replica)).store->get(k).is_ok());
  }
  auto c2 = connect(n.addresses());
  for (int i = 0; i < 400; ++i) {
    INFO("key k" << i);
    auto got = c2->get(fmt::format("k{}", i));
    REQUIRE(got.is_ok());
    REQUIRE(got->str() == value_of(i));
  }
}

TEST_CASE("replica node: two deaths one after the other, each re-replicated before the next",
          "[replicas]") {
  Nodes n;
  for (uint32_t id : {1u, 2u, 3u, 4u}) n.start(id, 2);
  REQUIRE(wait_until([&] { return n.replicated(2); }));
  auto c = connect(n.addresses());
  auto check_all = [&](int upto) {
    auto m = n.map(n.live.begin()->first);
    for (int i = 0; i < upto; ++i) {
      const std::string k = fmt::format("k{}", i);
      const uint32_t slot = cluster::slot_of(k), owner = m->owner_of(slot);
      const uint32_t replica = m->replica_of(slot, 0);
      INFO("key " << k << " slot " << slot << " owner " << owner << " replica " << replica
                  << " epoch " << m->epoch);
      REQUIRE(ServerAccess::core(*n.live.at(owner)).store->get(k).is_ok());
      REQUIRE(replica != kNoNode);
      REQUIRE(ServerAccess::core(*n.live.at(replica)).store->get(k).is_ok());
    }
  };
  for (int i = 0; i < 300; ++i) REQUIRE(c->put(fmt::format("k{}", i), value_of(i)).is_ok());
  check_all(300);
  n.kill(1);
  REQUIRE(wait_until([&] { return n.replicated(2); }));
  check_all(300);
  auto c2 = connect(n.addresses());
  for (int i = 300; i < 500; ++i) REQUIRE(c2->put(fmt::format("k{}", i), value_of(i)).is_ok());
  check_all(500);
  n.kill(3);
  REQUIRE(wait_until([&] { return n.replicated(2); }));
  check_all(500);
}

TEST_CASE(
    "replica node: put_many records its versions and get_many reads replicas with them (read "
    "your writes)",
    "[replicas]") {
  Nodes n;
  for (uint32_t id : {1u, 2u}) n.start(id, 2);
  REQUIRE(wait_until([&] { return n.replicated(2); }));
  auto c = connect(n.addresses());  // read_from any
  std::vector<std::string> keys, old_values, new_values;
  for (int i = 0; i < 32; ++i) {
    keys.push_back(fmt::format("batch-{}", i));
    old_values.push_back(fmt::format("old-{}", i));
    new_values.push_back(fmt::format("new-{}", i));
  }
  auto put_all = [&](const std::vector<std::string>& values) {
    std::vector<KeyValue> items;
    for (size_t i = 0; i < keys.size(); ++i) items.push_back({keys[i], values[i]});
    for (const Status& s : c->put_many(items)) REQUIRE(s.is_ok());
  };
  std::vector<std::string_view> views(keys.begin(), keys.end());
  SECTION("get_many spreads over the copies") {
    put_all(new_values);
    // The keys node 1 owns: any read of them at node 2 is a replica's.
    auto m = n.map(1);
    std::vector<std::string_view> at1;
    std::vector<std::string> want;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (m->owner_of(cluster::slot_of(keys[i])) == 1) {
        at1.push_back(keys[i]);
        want.push_back(new_values[i]);
      }
    }
    REQUIRE(at1.size() >= 4u);
    const uint64_t before = ServerAccess::core(*n.live.at(2)).counters.gets.load();
    for (int round = 0; round < 10; ++round) {
      auto got = c->get_many(at1);
      for (size_t i = 0; i < at1.size(); ++i) {
        INFO("key " << at1[i]);
        REQUIRE(got[i].is_ok());
        REQUIRE(got[i]->str() == want[i]);
      }
    }
    // 40 or more reads at random over owner and replica: never none at the replica (2^-40).
    CHECK(ServerAccess::core(*n.live.at(2)).counters.gets.load() > before);
  }

  SECTION("a replica that lags redirects what this client wrote by put_many") {
    put_all(old_values);
    put_all(new_values);
    lag_replicas(n, keys, [](const std::string& k) { return "old-" + k.substr(6); });
    for (int round = 0; round < 10; ++round) {
      for (size_t i = 0; i < keys.size(); ++i) {
        INFO("key " << keys[i] << " round " << round);
        auto got = c->get(keys[i]);
        REQUIRE(got.is_ok());
        REQUIRE(got->str() == new_values[i]);
      }
      auto many = c->get_many(views);
      for (size_t i = 0; i < keys.size(); ++i) {
        INFO("get_many key " << keys[i] << " round " << round);
        REQUIRE(many[i].is_ok());
        REQUIRE(many[i]->str() == new_values[i]);
      }
    }
  }
}

// Reads every key by one of the read paths that route by read_from, values in key order (an
// error's text for a key that failed).
std::vector<std::string> read_by(const std::string& how, Client& c,
                                 const std::vector<std::string>& keys) {
  std::vector<std::string> out;
  if (how == "get_async") {
    std::vector<Pending> pending;
    for (const std::string& k : keys) pending.push_back(c.get_async(k));
    for (Pending& p : pending) {
      auto got = p.wait();
      out.push_back(got ? *got : got.status().to_string());
    }
    return out;
  }
  auto mem = c.allocate(keys.size() * 4096);
  REQUIRE(mem.is_ok());
  auto at = [&](size_t i, uint64_t len) {
    return std::string(reinterpret_cast<const char*>(mem->data()) + i * 4096, len);
  };
  if (how == "get_into") {
    for (size_t i = 0; i < keys.size(); ++i) {
      auto got = c.get_into(keys[i], *mem, i * 4096, 4096);
      out.push_back(got ? at(i, *got) : got.status().to_string());
    }
    return out;
  }
  std::vector<GetIntoItem> items;
  for (size_t i = 0; i < keys.size(); ++i) items.push_back({keys[i], &*mem, i * 4096, 4096});
  auto got = c.get_many_into(items);
  for (size_t i = 0; i < keys.size(); ++i) {
    out.push_back(got[i] ? at(i, *got[i]) : got[i].status().to_string());
  }
  return out;
}

TEST_CASE(
    "replica node: async and caller-memory GETs spread over the copies by read_from, and read "
    "the client's own writes at the primary",
    "[replicas]") {
  Nodes n;
  for (uint32_t id : {1u, 2u}) n.start(id, 2);
  REQUIRE(wait_until([&] { return n.replicated(2); }));
  auto writer = connect(n.addresses());  // read_from any
  // The keys node 1 owns: any read of them at node 2 is a replica's.
  auto m = n.map(1);
  std::vector<std::string> keys, want;
  for (int i = 0; keys.size() < 16; ++i) {
    std::string k = fmt::format("async-{}", i);
    if (m->owner_of(cluster::slot_of(k)) == 1) keys.push_back(std::move(k));
  }
  for (const std::string& k : keys) {
    want.push_back("new-" + k);
    REQUIRE(writer->put(k, want.back()).is_ok());
  }

  for (std::string how : {"get_async", "get_into", "get_many_into"}) {
    DYNAMIC_SECTION(how << ": a client that wrote nothing reads from both copies") {
      auto reader = connect(n.addresses());
      const uint64_t before = ServerAccess::core(*n.live.at(2)).counters.gets.load();
      for (int round = 0; round < 10; ++round) {
        INFO("round " << round);
        REQUIRE(read_by(how, *reader, keys) == want);
      }
      // 160 reads at random over owner and replica: never none at the replica (2^-160).
      CHECK(ServerAccess::core(*n.live.at(2)).counters.gets.load() > before);
    }
    DYNAMIC_SECTION(how << ": the writer's own reads are never answered by a lagging replica") {
      lag_replicas(n, keys, [](const std::string& k) { return "old-" + k; });
      for (int round = 0; round < 10; ++round) {
        INFO("round " << round);
        REQUIRE(read_by(how, *writer, keys) == want);
      }
    }
  }
}

TEST_CASE(
    "replica node: before a fresh fill the replica drops what it holds of the slot; a ready "
    "seat is never dropped",
    "[replicas]") {
  Nodes n;
  for (uint32_t id : {1u, 2u}) n.start(id, 2);
  REQUIRE(wait_until([&] { return n.replicated(2); }));
  auto c = connect(n.addresses());
  // Two keys node 1 owns in different slots; node 2 is their (ready) replica.
  auto m = n.map(1);
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 2; ++i) {
    std::string k = fmt::format("drop-{}", i);
    const uint32_t slot = cluster::slot_of(k);
    if (m->owner_of(slot) == 1 && (keys.empty() || slot != cluster::slot_of(keys[0]))) {
      keys.push_back(std::move(k));
    }
  }
  for (const std::string& k : keys) REQUIRE(c->put(k, "value-" + k).is_ok());
  const uint32_t slot = cluster::slot_of(keys[0]);
  ServerCore& replica = ServerAccess::core(*n.live.at(2));
  auto from1 = PeerSession::open(ServerAccess::core(*n.live.at(1)), 1, *m->node(2),
                                 std::chrono::steady_clock::now() + 5s);
  REQUIRE(from1.is_ok());

  // A ready seat: refused, nothing dropped.
  Status refused =
      (*from1)->drop_replica_slots({slot}, m->epoch, std::chrono::steady_clock::now() + 300ms);
  CHECK_FALSE(refused.is_ok());
  CHECK(replica.store->get(keys[0]).is_ok());

  // The replica missed a delete while it had no seat (here: the key put back at it by hand),
  // and its map now shows its seat of the slot not ready, as when it is given the seat again.
  REQUIRE(c->del(keys[0]).is_ok());
  REQUIRE(replica.store->put(keys[0], "stale", std::chrono::milliseconds(0)).is_ok());
  auto unready = std::make_shared<cluster::SlotMap>(*replica.cluster->map());
  unready->epoch += 100;
  const int seat = unready->replica_seat(slot, 2);
  REQUIRE(seat >= 0);
  unready->replica_ready[size_t(slot) * unready->seats() + size_t(seat)] = 0;
  REQUIRE(replica.cluster->set_map(unready));
  // A sender whose map is newer than the replica's is refused too.
  CHECK_FALSE(
      (*from1)
          ->drop_replica_slots({slot}, unready->epoch + 1, std::chrono::steady_clock::now() + 300ms)
          .is_ok());
  CHECK(replica.store->get(keys[0]).is_ok());
  REQUIRE((*from1)
              ->drop_replica_slots({slot}, m->epoch, std::chrono::steady_clock::now() + 5s)
              .is_ok());
  CHECK_FALSE(replica.store->get(keys[0]).is_ok());  // the stale key is gone
  CHECK(replica.store->get(keys[1]).is_ok());        // another slot's key is not

  // The drop fenced the slot: a push issued under an earlier map (one still in flight from
  // before the drop) is not applied, though the replica has no version of its key; one issued
  // under the filling map is.
  std::string fresh;
  for (int i = 0; fresh.empty() && i < 10'000'000; ++i) {
    std::string k = fmt::format("fence-{}", i);
    if (cluster::slot_of(k) == slot) fresh = std::move(k);
  }
  REQUIRE_FALSE(fresh.empty());
  ServerCore& owner = ServerAccess::core(*n.live.at(1));
  REQUIRE(owner.store->put(fresh, "late", std::chrono::milliseconds(0)).is_ok());
  auto ref = owner.store->get(fresh);
  REQUIRE(ref.is_ok());
  const uint64_t fence = m->epoch << Replication::kCounterBits;
  const auto soon = std::chrono::steady_clock::now() + 5s;
  REQUIRE((*from1)->put(fresh, *ref, std::nullopt, m->epoch, soon, fence - 1).is_ok());
  CHECK_FALSE(replica.store->get(fresh).is_ok());
  REQUIRE((*from1)->put(fresh, *ref, std::nullopt, m->epoch, soon, fence + 1).is_ok());
  CHECK(replica.store->get(fresh).is_ok());
}

TEST_CASE(
    "replica node: reads ride the request channel in a replicated cluster, writes of "
    "replicated slots go over gRPC and reach the replicas",
    "[replicas]") {
  Nodes n;
  for (uint32_t id : {1u, 2u}) n.start(id, 2);
  REQUIRE(wait_until([&] { return n.replicated(2); }));
  auto writer = connect(n.addresses());  // the channel is on by default (mock transport)
  for (int i = 0; i < 50; ++i) {
    REQUIRE(writer->put(fmt::format("ch-{}", i), fmt::format("value-{}", i)).is_ok());
  }
  REQUIRE(writer->del("ch-0").is_ok());
  // Both copies of every key hold what was written (the writes were replicated), and the
  // deleted one is gone at both.
  auto m = n.map(1);
  for (int i = 0; i < 50; ++i) {
    const std::string k = fmt::format("ch-{}", i);
    const uint32_t slot = cluster::slot_of(k);
    for (uint32_t node : {m->owner_of(slot), m->replica_of(slot, 0)}) {
      INFO("key " << k << " at node " << node);
      auto ref = ServerAccess::core(*n.live.at(node)).store->get(k);
      if (i == 0) {
        CHECK_FALSE(ref.is_ok());
      } else {
        REQUIRE(ref.is_ok());
        CHECK(std::string(reinterpret_cast<const char*>(ref->data()), ref->size()) ==
              fmt::format("value-{}", i));
      }
    }
  }
  // A reader that wrote nothing sends no min_version: its GETs ride the channel (refused at
  // Hello, none would), counted by the client per node session.
  auto reader = connect(n.addresses());
  auto posted = [&] {
    uint64_t total = 0;
    for (const ChannelUse& u : reader->channel_use()) total += u.requests;
    return total;
  };
  const uint64_t before = posted();
  for (int round = 0; round < 20; ++round) {
    for (int i = 1; i < 50; ++i) {
      auto got = reader->get(fmt::format("ch-{}", i));
      REQUIRE(got.is_ok());
      REQUIRE(got->str() == fmt::format("value-{}", i));
    }
  }
  const uint64_t after = posted();
  INFO("requests posted into the nodes' channels over 980 GETs: " << after - before);
  CHECK(after - before >= 980);
}

}  // namespace kvrdma::server
