// ClusterView: every row of docs/cluster.md's "Serving by the map" table, hand-off marks and
// their end, and maps arriving out of order.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "rpc/status_map.h"
#include "server/cluster_view.h"

using kvrdma::Code;
using kvrdma::cluster::kNoNode;
using kvrdma::cluster::kSlots;
using kvrdma::cluster::NodeInfo;
using kvrdma::cluster::SlotMap;
using kvrdma::server::ClusterView;
using kvrdma::server::SlotOp;
using kvrdma::server::SlotVerdict;

namespace {

// Slots used below, one per row of the table (node 1 is "this node").
constexpr uint32_t kOwned = 10;        // owner 1, not moving
constexpr uint32_t kMovingOut = 11;    // owner 1, next 2
constexpr uint32_t kImporting = 12;    // owner 2, next 1
constexpr uint32_t kOther = 13;        // owner 2, not moving
constexpr uint32_t kOtherMoving = 14;  // owner 2, next 3
constexpr uint32_t kUnassigned = 15;   // no owner

std::shared_ptr<const SlotMap> make_map(uint64_t epoch) {
  auto m = std::make_shared<SlotMap>();
  m->cluster = std::string("view-test");
  m->epoch = epoch;
  m->controller = 1;
  for (uint32_t id : {1u, 2u, 3u}) {
    m->nodes.push_back(NodeInfo{id, "10.0.0." + std::to_string(id) + ":5005", "active", "mock"});
  }
  m->owner.assign(kSlots, 1);
  m->next_owner.assign(kSlots, kNoNode);
  m->next_owner[kMovingOut] = 2;
  m->owner[kImporting] = 2;
  m->next_owner[kImporting] = 1;
  m->owner[kOther] = 2;
  m->owner[kOtherMoving] = 2;
  m->next_owner[kOtherMoving] = 3;
  m->owner[kUnassigned] = kNoNode;
  return m;
}

// A copy of `base` at `epoch` with `slot`'s owner and next owner set.
std::shared_ptr<const SlotMap> with_slot(const SlotMap& base, uint64_t epoch, uint32_t slot,
                                         uint32_t owner, uint32_t next) {
  auto m = std::make_shared<SlotMap>(base);
  m->epoch = epoch;
  m->owner[slot] = owner;
  m->next_owner[slot] = next;
  return m;
}

void check_detail(const SlotVerdict& v, uint32_t slot, uint32_t owner, std::string address,
                  uint64_t epoch, bool moved) {
  CHECK(v.detail.slot() == slot);
  CHECK(v.detail.owner_id() == owner);
  CHECK(v.detail.owner_address() == address);
  CHECK(v.detail.epoch() == epoch);
  CHECK(v.detail.moved() == moved);
  // The refusal carries the same detail, typed, whatever its message says.
  kvrdma::Status s = v.refusal();
  CHECK(s.code() == Code::kFailedPrecondition);
  auto w = kvrdma::rpc::wrong_owner_of(s);
  REQUIRE(w.has_value());
  CHECK(w->SerializeAsString() == v.detail.SerializeAsString());
}

const SlotOp kOps[] = {SlotOp::kRead, SlotOp::kWrite, SlotOp::kDelete};

}  // namespace

TEST_CASE("cluster view: outside cluster mode every request is served", "[cluster_view]") {
  ClusterView view(1, false);
  CHECK_FALSE(view.enabled());
  for (SlotOp op : kOps) {
    for (bool peer : {false, true}) {
      CHECK(view.check(kOther, op, peer).kind == SlotVerdict::kServe);
    }
  }
  CHECK(view.map()->epoch == 0);
}

TEST_CASE("cluster view: before the first map every slot is refused, owner unknown",
          "[cluster_view]") {
  ClusterView view(1, true);
  CHECK(view.map()->epoch == 0);
  for (SlotOp op : kOps) {
    SlotVerdict v = view.check(kOwned, op);
    CHECK(v.kind == SlotVerdict::kRefuse);
    check_detail(v, kOwned, kNoNode, "", 0, false);
  }
  CHECK_THAT(view.check(7, SlotOp::kRead).refusal().message(), Catch::Contains("no owner"));
}

TEST_CASE("cluster view: the verdict for every row of the serving table", "[cluster_view]") {
  ClusterView view(1, true);
  REQUIRE(view.set_map(make_map(5)));
  for (SlotOp op : kOps) {
    for (bool peer : {false, true}) {
      INFO("op " << static_cast<int>(op) << " peer " << peer);
      // Owner, not moving: serve.
      CHECK(view.check(kOwned, op, peer).kind == SlotVerdict::kServe);
      // Owner, moving out, not handed off: serve, the detail names the next owner (moved).
      SlotVerdict out = view.check(kMovingOut, op, peer);
      CHECK(out.kind == SlotVerdict::kServeMovingOut);
      check_detail(out, kMovingOut, 2, "10.0.0.2:5005", 5, true);
      // Next owner (importing): serve, from a client or from the moving node alike.
      CHECK(view.check(kImporting, op, peer).kind == SlotVerdict::kServe);
      // Anything else: wrong owner, naming the owner (not a redirect).
      SlotVerdict other = view.check(kOther, op, peer);
      CHECK(other.kind == SlotVerdict::kRefuse);
      check_detail(other, kOther, 2, "10.0.0.2:5005", 5, false);
      SlotVerdict other_moving = view.check(kOtherMoving, op, peer);
      CHECK(other_moving.kind == SlotVerdict::kRefuse);
      check_detail(other_moving, kOtherMoving, 2, "10.0.0.2:5005", 5, false);
      SlotVerdict none = view.check(kUnassigned, op, peer);
      CHECK(none.kind == SlotVerdict::kRefuse);
      check_detail(none, kUnassigned, kNoNode, "", 5, false);
    }
  }
  CHECK_THAT(view.check(kOther, SlotOp::kRead).refusal().message(),
             Catch::Contains("node 2 at 10.0.0.2:5005 owns it in map epoch 5"));
  CHECK_THAT(view.check(kMovingOut, SlotOp::kRead).refusal().message(),
             Catch::Contains("moving to node 2 at 10.0.0.2:5005"));

  SECTION("owner, handed off: a `moved` redirect for every operation") {
    const uint32_t slots[] = {kMovingOut};
    {
      std::unique_lock gate(view.write_gate());
      view.mark_handed_off(slots);
    }
    CHECK(view.handed_off(kMovingOut));
    CHECK_FALSE(view.handed_off(kOwned));
    for (SlotOp op : kOps) {
      SlotVerdict v = view.check(kMovingOut, op);
      CHECK(v.kind == SlotVerdict::kRefuse);
      check_detail(v, kMovingOut, 2, "10.0.0.2:5005", 5, true);
    }
    CHECK(view.check(kOwned, SlotOp::kWrite).kind == SlotVerdict::kServe);  // others unchanged
  }
}

TEST_CASE("cluster view: an older or equal map is ignored", "[cluster_view]") {
  ClusterView view(1, true);
  REQUIRE(view.set_map(make_map(5)));
  CHECK_FALSE(view.set_map(with_slot(*make_map(5), 5, kOther, 1, kNoNode)));
  CHECK_FALSE(view.set_map(with_slot(*make_map(5), 4, kOther, 1, kNoNode)));
  CHECK(view.map()->epoch == 5);
  CHECK(view.check(kOther, SlotOp::kRead).kind == SlotVerdict::kRefuse);
  REQUIRE(view.set_map(with_slot(*make_map(5), 6, kOther, 1, kNoNode)));
  CHECK(view.map()->epoch == 6);
  CHECK(view.check(kOther, SlotOp::kRead).kind == SlotVerdict::kServe);
  SlotVerdict v = view.check(kOtherMoving, SlotOp::kRead);
  check_detail(v, kOtherMoving, 2, "10.0.0.2:5005", 6, false);  // the epoch of the new map
}

TEST_CASE("cluster view: hand-off marks last while the move does, and end with it",
          "[cluster_view]") {
  ClusterView view(1, true);
  REQUIRE(view.set_map(make_map(5)));
  const uint32_t slots[] = {kMovingOut};
  view.mark_handed_off(slots);
  REQUIRE(view.handed_off(kMovingOut));

  SECTION("a newer map with the same move keeps the mark") {
    REQUIRE(view.set_map(make_map(6)));
    CHECK(view.handed_off(kMovingOut));
    check_detail(view.check(kMovingOut, SlotOp::kWrite), kMovingOut, 2, "10.0.0.2:5005", 6, true);
  }
  SECTION("the move finished: the mark goes, the new owner is named, not a redirect") {
    REQUIRE(view.set_map(with_slot(*make_map(5), 6, kMovingOut, 2, kNoNode)));
    CHECK_FALSE(view.handed_off(kMovingOut));
    SlotVerdict v = view.check(kMovingOut, SlotOp::kRead);
    CHECK(v.kind == SlotVerdict::kRefuse);
    check_detail(v, kMovingOut, 2, "10.0.0.2:5005", 6, false);
    // Should the slot come back to this node later, it is served again.
    REQUIRE(view.set_map(with_slot(*make_map(5), 7, kMovingOut, 1, kNoNode)));
    CHECK(view.check(kMovingOut, SlotOp::kWrite).kind == SlotVerdict::kServe);
  }
  SECTION("the move was cancelled: the mark goes and the slot is served here again") {
    REQUIRE(view.set_map(with_slot(*make_map(5), 6, kMovingOut, 1, kNoNode)));
    CHECK_FALSE(view.handed_off(kMovingOut));
    CHECK(view.check(kMovingOut, SlotOp::kWrite).kind == SlotVerdict::kServe);
  }
  SECTION("the slot now moves to another node: the mark goes, the new move starts afresh") {
    REQUIRE(view.set_map(with_slot(*make_map(5), 6, kMovingOut, 1, 3)));
    CHECK_FALSE(view.handed_off(kMovingOut));
    SlotVerdict v = view.check(kMovingOut, SlotOp::kWrite);
    CHECK(v.kind == SlotVerdict::kServeMovingOut);
    check_detail(v, kMovingOut, 3, "10.0.0.3:5005", 6, true);
  }
  SECTION("an older map changes nothing") {
    CHECK_FALSE(view.set_map(with_slot(*make_map(5), 4, kMovingOut, 2, kNoNode)));
    CHECK(view.handed_off(kMovingOut));
  }
}

TEST_CASE("cluster view: serving starts true and follows set_serving", "[cluster_view]") {
  ClusterView view(1, true);
  CHECK(view.serving());
  view.set_serving(false);
  CHECK_FALSE(view.serving());
  view.set_serving(true);
  CHECK(view.serving());
}
