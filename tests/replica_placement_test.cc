// Replica placement and the controller's replica rules (docs/cluster.md "Replicas"), as pure
// functions: no etcd.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cluster/placement.h"

namespace kvrdma::cluster {
namespace {

std::vector<NodeInfo> nodes(std::initializer_list<uint32_t> ids, bool distinct_hosts = false) {
  std::vector<NodeInfo> out;
  for (uint32_t id : ids) {
    NodeInfo n;
    n.id = id;
    n.address = distinct_hosts ? "10.0.0." + std::to_string(id) + ":7000"
                               : "127.0.0.1:" + std::to_string(7000 + id);
    out.push_back(n);
  }
  return out;
}

// Every owned slot has `want` distinct replicas, none its owner; each node holds a fair share.
void require_replicas(const SlotMap& m, uint32_t want) {
  REQUIRE(m.owner.size() == kSlots);
  std::map<uint32_t, size_t> load;
  for (uint32_t s = 0; s < kSlots; ++s) {
    std::set<uint32_t> seen{m.owner[s]};
    uint32_t have = 0;
    for (uint32_t i = 0; i < m.seats(); ++i) {
      uint32_t r = m.replica_of(s, i);
      if (r == kNoNode) continue;
      REQUIRE(seen.insert(r).second);
      REQUIRE(m.node(r) != nullptr);
      ++have;
      ++load[r];
    }
    REQUIRE(have == want);
  }
  if (load.empty()) return;
  auto [lo, hi] = std::minmax_element(load.begin(), load.end(),
                                      [](auto& a, auto& b) { return a.second < b.second; });
  REQUIRE(hi->second - lo->second <= kSlots / 50);  // within 2% of a share
}

SlotMap first_map(const std::vector<NodeInfo>& members, uint32_t replicas) {
  SlotMap empty;
  auto m = next_map(empty, members, {}, members.front().id, {}, replicas);
  REQUIRE(m);
  return *m;
}

}  // namespace

TEST_CASE("host_of strips the port and scheme", "[replica-placement]") {
  CHECK(host_of("10.0.0.5:50051") == "10.0.0.5");
  CHECK(host_of("http://[::1]:50051") == "[::1]");
  CHECK(host_of("[::1]") == "[::1]");
  CHECK(host_of("localhost") == "localhost");
}

TEST_CASE("the first map of R=3 gives every slot two replicas, none ready", "[replica-placement]") {
  SlotMap m = first_map(nodes({0, 1, 2, 3}), 3);
  CHECK(m.replicas == 3u);
  require_replicas(m, 2);
  CHECK(std::none_of(m.replica_ready.begin(), m.replica_ready.end(), [](uint8_t r) { return r; }));
  SECTION("the wire form keeps replicas and ready flags") {
    v1::ClusterMap wire;
    to_proto(m, &wire);
    auto back = from_proto(wire);
    REQUIRE(back);
    CHECK(back->replicas == 3u);
    CHECK(back->replica == m.replica);
    CHECK(back->replica_ready == m.replica_ready);
  }
  SECTION("a map of R=1 has no replicas") {
    SlotMap one = first_map(nodes({0, 1}), 1);
    CHECK(one.replica.empty());
    CHECK(one.seats() == 0u);
  }
}

TEST_CASE("R is the cluster's: later controllers keep the map's", "[replica-placement]") {
  SlotMap m = first_map(nodes({0, 1, 2}), 2);
  auto next = next_map(m, nodes({0, 1, 2, 3}), {}, 1, {}, 3);
  REQUIRE(next);
  CHECK(next->replicas == 2u);
}

TEST_CASE("fewer nodes than copies: every other node is a replica", "[replica-placement]") {
  SlotMap m = first_map(nodes({4, 7}), 3);
  require_replicas(m, 1);
}

TEST_CASE("filled/<owner> at the current epoch makes its replicas ready", "[replica-placement]") {
  SlotMap m = first_map(nodes({0, 1, 2}), 2);
  auto next = next_map(m, nodes({0, 1, 2}), {}, 0, {{1, m.epoch}}, 2);
  REQUIRE(next);
  for (uint32_t s = 0; s < kSlots; ++s) {
    INFO("slot " << s);
    CHECK(next->replica_ready_of(s, 0) == (next->owner[s] == 1));
    CHECK(next->serves_reads(s, next->replica_of(s, 0)) == (next->owner[s] == 1));
  }
  SECTION("a stale filled epoch changes nothing") {
    auto again = next_map(*next, nodes({0, 1, 2}), {}, 0, {{2, m.epoch}}, 2);
    CHECK_FALSE(again);
  }
}

TEST_CASE("filled/<id> does not vouch for slots that just came to <id> by a move",
          "[replica-placement]") {
  SlotMap m;
  m.epoch = 9;
  m.nodes = nodes({0, 1, 2});
  m.replicas = 2;
  m.owner.assign(kSlots, 0);
  m.next_owner.assign(kSlots, kNoNode);
  m.next_owner[3] = 1;  // slot 3 moves 0 -> 1; node 0 fills its replica, node 2
  m.replica.assign(kSlots, 2);
  m.replica_ready.assign(kSlots, 1);
  m.replica_ready[3] = 0;
  // Node 0 handed off; node 1 wrote filled/1 for its own slots (it has none yet).
  auto after = next_map(m, nodes({0, 1, 2}), {{0, 9}}, 0, {{1, 9}}, 2);
  REQUIRE(after);
  REQUIRE(after->owner[3] == 1u);
  CHECK(after->replica_of(3, 0) == 2u);
  CHECK_FALSE(after->replica_ready_of(3, 0));  // node 1 must fill it first
}

TEST_CASE("filled/<owner> does not vouch for a slot that was moving while it filled",
          "[replica-placement]") {
  // The race behind a ready replica missing a key: slot 3 moves 0 -> 1 and has a new replica,
  // node 2. Node 0's mover copies keys to node 1 and erases them at node 0 as it goes, so node
  // 0's fill of node 2 missed those; node 1 never pushes them (the replicas are meant to have
  // them). If filled/0 made node 2 ready, the move would finish with a ready replica short of
  // keys, and promoting it would lose acknowledged writes.
  SlotMap m;
  m.epoch = 13;
  m.nodes = nodes({0, 1, 2});
  m.replicas = 2;
  m.owner.assign(kSlots, 0);
  m.next_owner.assign(kSlots, kNoNode);
  m.next_owner[3] = 1;
  m.replica.assign(kSlots, 2);
  m.replica_ready.assign(kSlots, 1);
  m.replica_ready[3] = 0;
  m.replica_ready[4] = 0;  // slot 4 stays with node 0: its fill counts
  // Node 0 filled in epoch 13 but has not handed slot 3 off yet.
  auto during = next_map(m, nodes({0, 1, 2}), {}, 0, {{0, 13}}, 2);
  REQUIRE(during);
  CHECK(during->owner[3] == 0u);
  CHECK(during->next_owner_of(3) == 1u);
  CHECK(during->replica_of(3, 0) == 2u);
  CHECK_FALSE(during->replica_ready_of(3, 0));
  CHECK(during->replica_ready_of(4, 0));
  // The move finishes: still not ready; node 1, the owner now, fills it, and only its own
  // filled/1 at that epoch makes it ready.
  auto moved = next_map(*during, nodes({0, 1, 2}), {{0, 14}}, 0, {{0, 14}}, 2);
  REQUIRE(moved);
  REQUIRE(moved->owner[3] == 1u);
  CHECK(moved->replica_of(3, 0) == 2u);
  CHECK_FALSE(moved->replica_ready_of(3, 0));
  auto filled = next_map(*moved, nodes({0, 1, 2}), {}, 0, {{1, moved->epoch}}, 2);
  REQUIRE(filled);
  CHECK(filled->replica_ready_of(3, 0));
}

TEST_CASE("a dead owner's slots go to a ready replica in one epoch, and R is made up",
          "[replica-placement]") {
  auto members = nodes({0, 1, 2, 3});
  SlotMap m = first_map(members, 2);
  auto ready =
      next_map(m, members, {}, 0, {{0, m.epoch}, {1, m.epoch}, {2, m.epoch}, {3, m.epoch}}, 2);
  REQUIRE(ready);
  std::map<uint32_t, uint32_t> heir;  // slot of node 2 -> its replica
  for (uint32_t s = 0; s < kSlots; ++s) {
    if (ready->owner[s] == 2) heir[s] = ready->replica_of(s, 0);
    REQUIRE(ready->replica_ready_of(s, 0));
  }
  REQUIRE(!heir.empty());
  auto after = next_map(*ready, nodes({0, 1, 3}), {}, 0, {}, 2);
  REQUIRE(after);
  CHECK(after->epoch == ready->epoch + 1);
  for (auto [s, r] : heir) {
    INFO("slot " << s);
    REQUIRE(after->owner[s] == r);  // promoted, in this one epoch
    REQUIRE(after->replica_of(s, 0) != kNoNode);
    REQUIRE_FALSE(after->replica_ready_of(s, 0));  // the new replica fills first
  }
  // Slots node 2 was a replica of keep their owner and get a new, unfilled replica.
  for (uint32_t s = 0; s < kSlots; ++s) {
    if (ready->replica_of(s, 0) != 2) continue;
    REQUIRE(after->owner[s] == ready->owner[s]);
    REQUIRE(after->replica_of(s, 0) != 2);
    REQUIRE_FALSE(after->replica_ready_of(s, 0));
  }
  require_replicas(*after, 1);
  // Replicas that stayed keep their ready flag.
  for (uint32_t s = 0; s < kSlots; ++s) {
    if (ready->owner[s] != 2 && ready->replica_of(s, 0) != 2 &&
        after->next_owner_of(s) == kNoNode) {
      REQUIRE(after->replica_of(s, 0) == ready->replica_of(s, 0));
      REQUIRE(after->replica_ready_of(s, 0));
    }
  }
}

TEST_CASE("a ready replica is promoted before the next owner", "[replica-placement]") {
  SlotMap m;
  m.epoch = 5;
  m.nodes = nodes({0, 1, 2});
  m.replicas = 2;
  m.owner.assign(kSlots, 0);
  m.next_owner.assign(kSlots, kNoNode);
  m.next_owner[7] = 1;
  m.replica.assign(kSlots, 2);
  m.replica_ready.assign(kSlots, 1);
  m.replica[8] = 1;
  m.replica_ready[8] = 0;
  auto after = next_map(m, nodes({1, 2}), {}, 1, {}, 2);
  REQUIRE(after);
  CHECK(after->owner[7] == 2u);  // ready replica wins over the move's destination
  CHECK(after->next_owner_of(7) == kNoNode);
  CHECK(after->owner[8] == 1u);  // an unfilled replica is better than nothing
  CHECK(after->owner[9] == 2u);
  for (uint32_t s = 0; s < kSlots; ++s) REQUIRE(after->replica_of(s, 0) != after->owner[s]);
}

TEST_CASE("replicas prefer other hosts when the map knows several", "[replica-placement]") {
  // Nodes 0 and 1 share a host; 2 and 3 have their own.
  auto members = nodes({0, 1, 2, 3}, true);
  members[1].address = "10.0.0.0:7001";
  SlotMap m = first_map(members, 2);
  for (uint32_t s = 0; s < kSlots; ++s) {
    const uint32_t o = m.owner[s], r = m.replica_of(s, 0);
    INFO("slot " << s << " owner " << o << " replica " << r);
    REQUIRE(host_of(m.node(o)->address) != host_of(m.node(r)->address));
  }
}

TEST_CASE("a leaving node gives up its replicas", "[replica-placement]") {
  auto members = nodes({0, 1, 2});
  SlotMap m = first_map(members, 2);
  members[2].state = "leaving";
  auto after = next_map(m, members, {}, 0, {}, 2);
  REQUIRE(after);
  for (uint32_t s = 0; s < kSlots; ++s) REQUIRE(after->replica_of(s, 0) != 2u);
}

}  // namespace kvrdma::cluster
