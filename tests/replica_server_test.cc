// The server's replica bookkeeping without processes: VersionTable (writes of a key only move
// forward, tombstones, slot maxima) and ClusterView's verdicts for replicas (reads served by a
// filled replica with a `moved` detail naming the primary; writes refused; the lease clock).
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "cluster/slot_map.h"
#include "kvrdma/options.h"
#include "server/cluster_view.h"
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
