#include "cluster/placement.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace kvrdma::cluster {
namespace {

std::vector<uint32_t> ids_up_to(uint32_t n) {
  std::vector<uint32_t> ids(n);
  for (uint32_t i = 0; i < n; ++i) ids[i] = i;
  return ids;
}

// Every slot owned by a member of `nodes`, each holding floor or ceil(kSlots / N).
void require_balanced(const std::vector<uint32_t>& owner, const std::vector<uint32_t>& nodes) {
  REQUIRE(owner.size() == kSlots);
  std::map<uint32_t, uint32_t> held;
  for (uint32_t id : nodes) held[id] = 0;
  for (uint32_t o : owner) {
    auto it = held.find(o);
    REQUIRE(it != held.end());
    ++it->second;
  }
  const uint32_t lo = kSlots / static_cast<uint32_t>(held.size());
  const uint32_t hi = lo + (kSlots % held.size() ? 1 : 0);
  for (auto [id, count] : held) {
    INFO("node " << id << " holds " << count);
    REQUIRE(count >= lo);
    REQUIRE(count <= hi);
  }
}

size_t count_of(const std::vector<uint32_t>& owner, uint32_t id) {
  return static_cast<size_t>(std::count(owner.begin(), owner.end(), id));
}

NodeInfo node(uint32_t id, std::string state = "active") {
  return NodeInfo{id, "127.0.0.1:" + std::to_string(7000 + id), std::move(state), "mock"};
}

// Runs the controller and the nodes' handoffs until the controller has nothing left to change.
// Every source hands off in the epoch of the map it is moving under. Returns the settled map.
SlotMap settle(SlotMap map, const std::vector<NodeInfo>& registered) {
  std::map<uint32_t, uint64_t> handed_off;
  for (int round = 0; round < 20; ++round) {
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (map.next_owner_of(s) != kNoNode) handed_off[map.owner[s]] = map.epoch;
    }
    auto next = next_map(map, registered, handed_off, 0);
    if (!next) return map;
    REQUIRE(next->epoch == map.epoch + 1);
    map = std::move(*next);
  }
  FAIL("the controller did not settle in 20 rounds");
  return map;
}

// Once settled: every slot has exactly one owner, an active registered node, shares balanced.
void require_settled(const SlotMap& map, const std::vector<NodeInfo>& registered) {
  REQUIRE_FALSE(map.moving());
  REQUIRE(map.next_owner.empty());
  REQUIRE(map.nodes.size() == registered.size());
  std::vector<uint32_t> active;
  for (const NodeInfo& n : registered) {
    if (n.state == "active") active.push_back(n.id);
  }
  require_balanced(map.owner, active);
}

}  // namespace

TEST_CASE("balanced_owners gives every node floor or ceil of the slots", "[placement]") {
  for (uint32_t n = 1; n <= 50; ++n) {
    INFO("nodes " << n);
    require_balanced(balanced_owners({}, ids_up_to(n)), ids_up_to(n));
  }
  for (uint32_t n : {100u, 127u, 300u, 1000u, 4096u, 16384u, 20000u}) {
    INFO("nodes " << n);
    require_balanced(balanced_owners({}, ids_up_to(n)), ids_up_to(n));
  }
  SECTION("sparse ids, unsorted and repeated") {
    std::vector<uint32_t> nodes = {900, 3, 77, 3, 12};
    require_balanced(balanced_owners({}, nodes), {3, 12, 77, 900});
  }
  SECTION("rebalancing from a lopsided map") {
    std::vector<uint32_t> current(kSlots, 4);
    std::fill(current.begin(), current.begin() + 10, 9);  // 9 holds 10, 4 holds the rest
    auto owner = balanced_owners(current, ids_up_to(7));
    require_balanced(owner, ids_up_to(7));
    CHECK(count_of(owner, 9) == 0u);
  }
  SECTION("no nodes: nobody owns anything") {
    auto owner = balanced_owners(std::vector<uint32_t>(kSlots, 1), {});
    CHECK(owner == std::vector<uint32_t>(kSlots, kNoNode));
  }
}

TEST_CASE("balanced_owners keeps a balanced map as it is", "[placement]") {
  for (uint32_t n : {1u, 3u, 7u, 64u, 1000u}) {
    auto owner = balanced_owners({}, ids_up_to(n));
    CHECK(balanced_owners(owner, ids_up_to(n)) == owner);
  }
}

TEST_CASE("balanced_owners is deterministic", "[placement]") {
  std::vector<uint32_t> a = {5, 1, 9, 2};
  std::vector<uint32_t> b = {2, 9, 1, 5};
  auto first = balanced_owners({}, a);
  CHECK(balanced_owners({}, a) == first);
  CHECK(balanced_owners({}, b) == first);
  // Lowest id first on ties: the first pool slots go to node 1.
  CHECK(first[0] == 1u);
  CHECK(first[1] == 2u);
  std::vector<uint32_t> grown = a;
  grown.push_back(7);
  std::vector<uint32_t> grown_shuffled = {7, 2, 9, 1, 5};
  CHECK(balanced_owners(first, grown) == balanced_owners(first, grown_shuffled));
}

TEST_CASE("a join moves only the newcomer's slots, a leave only the leaver's", "[placement]") {
  auto check_join = [](const std::vector<uint32_t>& before, std::vector<uint32_t> nodes,
                       uint32_t newcomer) {
    nodes.push_back(newcomer);
    auto after = balanced_owners(before, nodes);
    require_balanced(after, nodes);
    size_t moved = 0;
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (after[s] != before[s]) {
        ++moved;
        REQUIRE(after[s] == newcomer);
      }
    }
    CHECK(moved == count_of(after, newcomer));
    CHECK(moved >= kSlots / nodes.size());
    CHECK(moved <= kSlots / nodes.size() + 1);
    return after;
  };
  auto check_leave = [](const std::vector<uint32_t>& before, std::vector<uint32_t> nodes,
                        uint32_t leaver) {
    nodes.erase(std::find(nodes.begin(), nodes.end(), leaver));
    auto after = balanced_owners(before, nodes);
    require_balanced(after, nodes);
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (before[s] != leaver) REQUIRE(after[s] == before[s]);
    }
    return after;
  };

  SECTION("growing one node at a time from 1 to 40, then shrinking to 1") {
    std::vector<uint32_t> nodes = {0};
    auto owner = balanced_owners({}, nodes);
    for (uint32_t id = 1; id < 40; ++id) {
      owner = check_join(owner, nodes, id);
      nodes.push_back(id);
    }
    // Leave in a scattered order so both quota sizes leave.
    for (uint32_t k = 0; k < 39; ++k) {
      uint32_t leaver = nodes[(k * 7) % nodes.size()];
      owner = check_leave(owner, nodes, leaver);
      nodes.erase(std::find(nodes.begin(), nodes.end(), leaver));
    }
    CHECK(owner == std::vector<uint32_t>(kSlots, nodes[0]));
  }
  SECTION("large clusters") {
    for (uint32_t n : {299u, 1000u}) {
      auto nodes = ids_up_to(n);
      auto owner = balanced_owners({}, nodes);
      owner = check_join(owner, nodes, n + 5);
      nodes.push_back(n + 5);
      owner = check_leave(owner, nodes, 17);
      nodes.erase(std::find(nodes.begin(), nodes.end(), 17u));
      check_leave(owner, nodes, n + 5);
    }
  }
}

TEST_CASE("next_map: the first map assigns every slot at once", "[placement]") {
  SlotMap empty;
  empty.cluster = "prod";
  std::vector<NodeInfo> registered = {node(7), node(2), node(4)};
  auto m = next_map(empty, registered, {}, 4);
  REQUIRE(m);
  CHECK(m->cluster == "prod");
  CHECK(m->epoch == 1u);
  CHECK(m->controller == 4u);
  CHECK(m->nodes == std::vector<NodeInfo>{node(2), node(4), node(7)});
  CHECK(m->next_owner.empty());
  CHECK(m->owner == balanced_owners({}, std::vector<uint32_t>{2, 4, 7}));
  SECTION("and nothing changes next time") {
    CHECK_FALSE(next_map(*m, registered, {}, 4));
    CHECK_FALSE(next_map(*m, registered, {{2, 1}, {4, 1}}, 2));
  }
  SECTION("no nodes registered: no map") { CHECK_FALSE(next_map(empty, {}, {}, 0)); }
}

TEST_CASE("next_map: a join starts moves, a handoff finishes them", "[placement]") {
  std::vector<NodeInfo> three = {node(0), node(1), node(2)};
  SlotMap m0 = *next_map(SlotMap{}, three, {}, 0);
  std::vector<NodeInfo> four = {node(0), node(1), node(2), node(3)};
  auto m1 = next_map(m0, four, {}, 0);
  REQUIRE(m1);
  CHECK(m1->epoch == m0.epoch + 1);
  CHECK(m1->owner == m0.owner);  // nothing changes hands before the values went over
  auto target = balanced_owners(m0.owner, std::vector<uint32_t>{0, 1, 2, 3});
  for (uint32_t s = 0; s < kSlots; ++s) {
    REQUIRE(m1->next_owner_of(s) == (target[s] != m0.owner[s] ? 3u : kNoNode));
  }
  CHECK(count_of(m1->next_owner, 3) == kSlots / 4);

  SECTION("no new move starts while one is in flight") {
    auto five = four;
    five.push_back(node(4));
    auto m2 = next_map(*m1, five, {}, 0);
    REQUIRE(m2);  // the node list changed
    CHECK(m2->nodes == five);
    CHECK(m2->owner == m1->owner);
    CHECK(m2->next_owner == m1->next_owner);
  }
  SECTION("a handoff of an older epoch finishes nothing") {
    CHECK_FALSE(next_map(*m1, four, {{0, m0.epoch}, {1, m0.epoch}}, 0));
  }
  SECTION("only the sources that handed off in this epoch finish") {
    auto m2 = next_map(*m1, four, {{0, m1->epoch}}, 0);
    REQUIRE(m2);
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (m1->owner[s] == 0 && m1->next_owner[s] == 3) {
        REQUIRE(m2->owner[s] == 3u);
        REQUIRE(m2->next_owner_of(s) == kNoNode);
      } else {
        REQUIRE(m2->owner[s] == m1->owner[s]);
        REQUIRE(m2->next_owner_of(s) == m1->next_owner_of(s));
      }
    }
    auto m3 = next_map(*m2, four, {{0, m1->epoch}, {1, m2->epoch}, {2, m2->epoch}}, 0);
    REQUIRE(m3);
    CHECK(m3->epoch == m1->epoch + 2);
    CHECK(m3->owner == target);
    CHECK(m3->next_owner.empty());
    CHECK_FALSE(next_map(*m3, four, {}, 0));
  }
}

TEST_CASE("next_map: a dead owner's slots go to their next owner or are reassigned",
          "[placement]") {
  std::vector<NodeInfo> three = {node(0), node(1), node(2)};
  SlotMap m0 = *next_map(SlotMap{}, three, {}, 0);

  SECTION("settled: the dead node's slots go straight to the survivors") {
    std::vector<NodeInfo> two = {node(0), node(2)};
    auto m1 = next_map(m0, two, {}, 0);
    REQUIRE(m1);
    CHECK(m1->next_owner.empty());
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (m0.owner[s] != 1) REQUIRE(m1->owner[s] == m0.owner[s]);
    }
    require_balanced(m1->owner, {0, 2});
  }
  SECTION("moving: a slot moving out of the dead node lands at its destination") {
    SlotMap moving = m0;
    moving.next_owner.assign(kSlots, kNoNode);
    moving.next_owner[0] = (m0.owner[0] + 1) % 3;
    uint32_t dead = m0.owner[0];
    uint32_t dest = moving.next_owner[0];
    uint32_t other_slot = 0;  // a slot of the dead node that was not moving
    while (other_slot < kSlots && (other_slot == 0 || m0.owner[other_slot] != dead)) ++other_slot;
    REQUIRE(other_slot < kSlots);
    std::vector<NodeInfo> alive;
    for (const NodeInfo& n : three) {
      if (n.id != dead) alive.push_back(n);
    }
    auto m1 = next_map(moving, alive, {}, 0);
    REQUIRE(m1);
    CHECK(m1->owner[0] == dest);
    // No move left in flight, so its unmoved slots are reassigned in the same map.
    CHECK(m1->owner[other_slot] != kNoNode);
    CHECK(m1->owner[other_slot] != dead);
    CHECK_FALSE(m1->moving());
  }
  SECTION("moving elsewhere: the dead node's slots are reassigned at once, moves go on") {
    std::vector<NodeInfo> four = {node(0), node(1), node(2), node(3)};
    SlotMap m1 = *next_map(m0, four, {}, 0);
    // Node 1 dies while the others still move slots to node 3.
    std::vector<NodeInfo> alive = {node(0), node(2), node(3)};
    auto m2 = next_map(m1, alive, {}, 0);
    REQUIRE(m2);
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (m1.owner[s] == 1) {
        // Served again at once: by its destination, or by a survivor (no values to move).
        if (m1.next_owner_of(s) == 3) REQUIRE(m2->owner[s] == 3u);
        REQUIRE(m2->owner[s] != kNoNode);
        REQUIRE(m2->owner[s] != 1u);
        REQUIRE(m2->next_owner_of(s) == kNoNode);
      } else {
        REQUIRE(m2->owner[s] == m1.owner[s]);
        REQUIRE(m2->next_owner_of(s) == m1.next_owner_of(s));
      }
    }
    require_settled(settle(*m2, alive), alive);
  }
}

TEST_CASE("next_map: a dead destination cancels the move", "[placement]") {
  std::vector<NodeInfo> three = {node(0), node(1), node(2)};
  SlotMap m0 = *next_map(SlotMap{}, three, {}, 0);
  std::vector<NodeInfo> four = {node(0), node(1), node(2), node(3)};
  SlotMap m1 = *next_map(m0, four, {}, 0);
  REQUIRE(m1.moving());
  auto m2 = next_map(m1, three, {}, 0);
  REQUIRE(m2);
  CHECK(m2->owner == m0.owner);
  CHECK(m2->next_owner.empty());
  CHECK(m2->nodes == three);
  CHECK(m2->epoch == m1.epoch + 1);
}

TEST_CASE("next_map: a leaving node is drained to the active ones", "[placement]") {
  std::vector<NodeInfo> three = {node(0), node(1), node(2)};
  SlotMap m0 = *next_map(SlotMap{}, three, {}, 0);
  std::vector<NodeInfo> leaving = {node(0), node(1, "leaving"), node(2)};
  auto m1 = next_map(m0, leaving, {}, 0);
  REQUIRE(m1);
  CHECK(m1->owner == m0.owner);
  for (uint32_t s = 0; s < kSlots; ++s) {
    REQUIRE((m1->next_owner_of(s) != kNoNode) == (m0.owner[s] == 1));
    REQUIRE(m1->next_owner_of(s) != 1u);
  }
  auto m2 = next_map(*m1, leaving, {{1, m1->epoch}}, 0);
  REQUIRE(m2);
  CHECK(m2->slots_of(1) == 0u);
  CHECK(m2->next_owner.empty());
  require_settled(*m2, leaving);
  SECTION("the last node leaving keeps its slots: there is nowhere to move them") {
    std::vector<NodeInfo> alone = {node(5, "leaving")};
    std::vector<NodeInfo> solo_active = {node(5)};
    SlotMap solo = *next_map(SlotMap{}, solo_active, {}, 5);
    auto m = next_map(solo, alone, {}, 5);
    REQUIRE(m);  // the state changed
    CHECK(m->owner == solo.owner);
    CHECK(m->next_owner.empty());
    CHECK_FALSE(next_map(*m, alone, {}, 5));
  }
}

TEST_CASE("a simulated cluster life keeps one owner per slot", "[placement]") {
  std::vector<NodeInfo> registered = {node(0), node(1), node(2)};
  SlotMap map = settle(SlotMap{}, registered);
  require_settled(map, registered);
  CHECK(map.epoch == 1u);

  registered.push_back(node(3));
  registered.push_back(node(4));
  SlotMap joined = settle(map, registered);
  require_settled(joined, registered);
  size_t moved = 0;
  for (uint32_t s = 0; s < kSlots; ++s) moved += joined.owner[s] != map.owner[s];
  CHECK(moved == joined.slots_of(3) + joined.slots_of(4));
  map = joined;

  registered[1].state = "leaving";
  map = settle(map, registered);
  require_settled(map, registered);
  CHECK(map.slots_of(1) == 0u);
  registered.erase(registered.begin() + 1);  // node 1 revokes its lease and exits
  map = settle(map, registered);
  require_settled(map, registered);

  SlotMap before_death = map;
  registered.erase(registered.begin() + 2);  // node 3 dies
  map = settle(map, registered);
  require_settled(map, registered);
  for (uint32_t s = 0; s < kSlots; ++s) {
    if (before_death.owner[s] != 3) REQUIRE(map.owner[s] == before_death.owner[s]);
  }
  CHECK(map.nodes == std::vector<NodeInfo>{node(0), node(2), node(4)});
}

}  // namespace kvrdma::cluster
