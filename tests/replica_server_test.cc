// The server's replica bookkeeping without processes: VersionTable (writes of a key only move
// forward, tombstones, slot maxima) and ClusterView's verdicts for replicas (reads served by a
// filled replica with a `moved` detail naming the primary; writes refused; the lease clock).
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>

#include "cluster/slot_map.h"
#include "kvrdma/options.h"
#include "server/cluster_view.h"
#include "server/slot_drop.h"
#include "server/version_table.h"

namespace kvrdma::server {
namespace {

using cluster::kNoNode;
using cluster::kSlots;

// Apply `version` to `key` as a replica does: only when it is newer. Returns whether it applied.
bool apply(VersionTable& t, const std::string& key, uint64_t version) {
  bool applied = false;
  t.with_key(key, [&](uint64_t current) -> uint64_t {
    if (current >= version) return 0;
    applied = true;
    return version;
  });
  return applied;
}

std::shared_ptr<cluster::SlotMap> replica_map(uint64_t epoch, bool ready) {
  auto m = std::make_shared<cluster::SlotMap>();
  m->epoch = epoch;
  m->replicas = 2;
  m->nodes = {{1, "127.0.0.1:1", "active", "mock"}, {2, "127.0.0.1:2", "active", "mock"}};
  m->owner.assign(kSlots, 1);
  m->replica.assign(kSlots, 2);
  m->replica_ready.assign(kSlots, ready ? 1 : 0);
  return m;
}

}  // namespace

TEST_CASE("VersionTable: a key only moves forward, deletes leave a tombstone", "[replicas]") {
  VersionTable t;
  const std::string k = "key";
  CHECK(t.version_of(k) == 0u);
  CHECK(apply(t, k, 5));
  CHECK_FALSE(apply(t, k, 3));  // a push that arrives late changes nothing
  CHECK_FALSE(apply(t, k, 5));
  CHECK(apply(t, k, 9));        // the delete's version stays as a tombstone
  CHECK_FALSE(apply(t, k, 7));  // so an older PUT cannot bring the key back
  CHECK(t.version_of(k) == 9u);
  CHECK(t.slot_version(cluster::slot_of(k)) == 9u);
  SECTION("forgetting a slot resets its keys and its maximum") {
    std::vector<bool> slots(kSlots, false);
    slots[cluster::slot_of(k)] = true;
    t.forget_where([&](std::string_view key) { return slots[cluster::slot_of(key)]; }, &slots);
    CHECK(t.version_of(k) == 0u);
    CHECK(t.slot_version(cluster::slot_of(k)) == 0u);
    CHECK(apply(t, k, 1));
  }
}

TEST_CASE(
    "VersionTable: tombstones are pruned after a while, and the slot's floor keeps "
    "refusing older pushes",
    "[replicas]") {
  auto now = std::chrono::steady_clock::now();
  const auto keep = std::chrono::seconds(70);
  VersionTable t(keep, [&] { return now; });
  // A slot with many deletes: each key written, then deleted (a tombstone).
  const uint32_t slot = cluster::slot_of("doomed-0");
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 500 && i < 10'000'000; ++i) {
    std::string k = "doomed-" + std::to_string(i);
    if (cluster::slot_of(k) == slot) keys.push_back(std::move(k));
  }
  REQUIRE(keys.size() == 500u);
  uint64_t v = 100;
  for (const std::string& k : keys) {
    REQUIRE(apply(t, k, ++v));
    bool erased = false;
    t.with_key(
        k,
        [&](uint64_t current) -> uint64_t {
          erased = current < v + 1;
          return erased ? ++v : 0;
        },
        true);
    REQUIRE(erased);
  }
  const uint64_t last_tombstone = v;
  CHECK(t.size() == keys.size());  // still within keep_tombstones: every tombstone stays
  CHECK(t.slot_floor(slot) == 0u);
  // A push of the first key older than its tombstone is refused while the tombstone stands.
  CHECK_FALSE(apply(t, keys.front(), 102));

  now += keep + std::chrono::seconds(1);
  // Touching each shard once prunes it: the table holds only what was written since.
  for (int i = 0; i < 4096; ++i) (void)apply(t, "live-" + std::to_string(i), v + 1 + i);
  CHECK(t.size() == 4096u);
  CHECK(t.slot_floor(slot) == last_tombstone);
  // A late push older than a pruned tombstone: refused by the floor (the key has no entry).
  CHECK(t.version_of(keys.front()) == last_tombstone);
  CHECK_FALSE(apply(t, keys.front(), 102));
  CHECK_FALSE(apply(t, keys.back(), last_tombstone - 1));
  // A write newer than the floor applies as usual.
  CHECK(apply(t, keys.front(), v + 1000));
  CHECK(t.version_of(keys.front()) == v + 1000);
  SECTION("a tombstone overwritten by a later PUT is not pruned with it") {
    VersionTable u(keep, [&] { return now; });
    u.with_key(
        "k", [](uint64_t) -> uint64_t { return 5; }, true);
    REQUIRE(apply(u, "k", 9));
    now += keep + std::chrono::seconds(1);
    (void)apply(u, "k", 1);  // prunes the shard of "k"
    CHECK(u.version_of("k") == 9u);
    CHECK(u.slot_floor(cluster::slot_of("k")) == 0u);
  }
  SECTION("forgetting the slot resets its floor") {
    std::vector<bool> slots(kSlots, false);
    slots[slot] = true;
    t.forget_where([&](std::string_view key) { return slots[cluster::slot_of(key)]; }, &slots);
    CHECK(t.slot_floor(slot) == 0u);
    CHECK(apply(t, keys.back(), 1));
  }
}

TEST_CASE("slots_to_drop: a next owner that becomes a replica drops its moved-in copies",
          "[replicas]") {
  // Slot 7 moves from node 1 to node 2, node 3 its replica; node 1 dies mid-move, so node 3 is
  // promoted and node 2 (whose copies came by the move, without versions) becomes a replica.
  cluster::SlotMap before;
  before.epoch = 4;
  before.replicas = 2;
  before.nodes = {{1, "127.0.0.1:1", "active", "mock"},
                  {2, "127.0.0.1:2", "active", "mock"},
                  {3, "127.0.0.1:3", "active", "mock"}};
  before.owner.assign(kSlots, 1);
  before.next_owner.assign(kSlots, kNoNode);
  before.next_owner[7] = 2;
  before.replica.assign(kSlots, 3);
  before.replica_ready.assign(kSlots, 1);
  cluster::SlotMap after = before;
  after.epoch = 5;
  after.nodes.erase(after.nodes.begin());
  after.owner.assign(kSlots, 3);
  after.next_owner.assign(kSlots, kNoNode);
  after.replica.assign(kSlots, 2);
  after.replica_ready.assign(kSlots, 0);

  auto joining2 = slots_to_drop(before, after, 2, true);
  CHECK(joining2[7]);  // its moved-in copies go before the fill
  CHECK(joining2[8]);  // a slot it did not hold at all: nothing there, dropped all the same
  CHECK_FALSE(slots_to_drop(before, after, 2, false)[7]);
  // The promoted replica keeps every value: it holds each acknowledged write.
  auto joining3 = slots_to_drop(before, after, 3, true);
  auto leaving3 = slots_to_drop(before, after, 3, false);
  CHECK(std::none_of(joining3.begin(), joining3.end(), [](bool b) { return b; }));
  CHECK(std::none_of(leaving3.begin(), leaving3.end(), [](bool b) { return b; }));
  SECTION("a replica that stays a replica keeps its copies") {
    cluster::SlotMap again = after;
    again.epoch = 6;
    again.replica_ready.assign(kSlots, 1);
    auto d = slots_to_drop(after, again, 2, true);
    CHECK(std::none_of(d.begin(), d.end(), [](bool b) { return b; }));
  }
  SECTION("a node that just started drops nothing") {
    cluster::SlotMap empty;
    auto d = slots_to_drop(empty, after, 2, true);
    CHECK(std::none_of(d.begin(), d.end(), [](bool b) { return b; }));
  }
}

TEST_CASE("ClusterView: a filled replica serves reads, redirecting misses to the primary",
          "[replicas]") {
  ClusterView view(2, true);
  REQUIRE(view.set_map(replica_map(4, true)));
  SlotVerdict read = view.check(7, SlotOp::kRead);
  CHECK(read.kind == SlotVerdict::kServeMovingOut);
  CHECK(read.detail.owner_id() == 1u);
  CHECK(read.detail.moved());
  CHECK(view.check(7, SlotOp::kWrite).kind == SlotVerdict::kRefuse);
  CHECK(view.check(7, SlotOp::kDelete).kind == SlotVerdict::kRefuse);
  SECTION("an unfilled replica serves no read") {
    REQUIRE(view.set_map(replica_map(5, false)));
    SlotVerdict v = view.check(7, SlotOp::kRead);
    CHECK(v.kind == SlotVerdict::kRefuse);
    CHECK_FALSE(v.detail.moved());
    CHECK(v.detail.owner_id() == 1u);
  }
}

TEST_CASE("ClusterView: with replicas a node stops serving once its lease may have expired",
          "[replicas]") {
  ClusterView view(1, true);
  REQUIRE(view.set_map(replica_map(4, true)));
  CHECK(view.serving());
  view.set_lease_until(std::chrono::steady_clock::now() - std::chrono::milliseconds(1));
  CHECK_FALSE(view.serving());
  view.set_lease_until(std::chrono::steady_clock::now() + std::chrono::seconds(60));
  CHECK(view.serving());
  SECTION("without replicas an etcd outage does not stop it (docs/cluster.md)") {
    auto one = replica_map(5, true);
    one->replicas = 1;
    one->replica.clear();
    one->replica_ready.clear();
    REQUIRE(view.set_map(one));
    view.set_lease_until(std::chrono::steady_clock::now() - std::chrono::milliseconds(1));
    CHECK(view.serving());
  }
}

TEST_CASE("settings: replicas (server) and read-from (client)", "[replicas]") {
  ServerOptions so;
  CHECK(so.replicas == 1u);
  REQUIRE(apply_setting(so, "replicas", "3").is_ok());
  CHECK(so.replicas == 3u);
  CHECK(apply_setting(so, "replicas", "0").code() == Code::kInvalidArgument);
  CHECK(apply_setting(so, "replicas", "6").code() == Code::kInvalidArgument);
  ClientOptions co;
  CHECK(co.read_from == ReadFrom::kPrimary);
  REQUIRE(apply_setting(co, "read-from", "any").is_ok());
  CHECK(co.read_from == ReadFrom::kAny);
  REQUIRE(apply_setting(co, "read-from", "nearest").is_ok());
  CHECK(co.read_from == ReadFrom::kNearest);
  Status bad = apply_setting(co, "read-from", "replica");
  CHECK(bad.code() == Code::kInvalidArgument);
  CHECK(bad.message().find("primary, any or nearest") != std::string::npos);
  CHECK(apply_setting(co, "replicas", "2").code() == Code::kInvalidArgument);  // server only
}

}  // namespace kvrdma::server
