// The client's routing decisions: the address list, grouping a batch by owner and merging it back
// in input order, the items a node refused, and picking the newest map.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "client/router.h"
#include "rpc/status_map.h"

namespace {

using kvrdma::Code;
using kvrdma::Result;
using kvrdma::Status;
using kvrdma::cluster::kNoNode;
using kvrdma::cluster::kSlots;
using kvrdma::cluster::SlotMap;
using namespace kvrdma::client;

// Node 1 owns slots [0, 8192), node 2 the rest; node 3 is named as the owner of slot 100 but
// not listed (it died).
SlotMap two_nodes(uint64_t epoch) {
  SlotMap m;
  m.epoch = epoch;
  m.nodes = {{1, "10.0.0.1:5001", "active", "mock"}, {2, "10.0.0.2:5002", "active", "mock"}};
  m.owner.assign(kSlots, 1);
  for (uint32_t s = kSlots / 2; s < kSlots; ++s) m.owner[s] = 2;
  m.owner[100] = 3;
  m.owner[101] = kNoNode;
  return m;
}

Status refused(uint32_t owner, std::string address, bool moved) {
  kvrdma::v1::WrongOwner w;
  w.set_slot(7);
  w.set_owner_id(owner);
  w.set_owner_address(std::move(address));
  w.set_epoch(9);
  w.set_moved(moved);
  return kvrdma::rpc::wrong_owner(w, "wrong owner");
}

}  // namespace

TEST_CASE("router: the address list is split on commas, trimmed and deduplicated") {
  auto one = parse_addresses("127.0.0.1:5000");
  REQUIRE(one);
  CHECK(*one == std::vector<std::string>{"127.0.0.1:5000"});
  auto many = parse_addresses(" a:1, http://b:2 ,,a:1,c:3 ");
  REQUIRE(many);
  CHECK(*many == std::vector<std::string>{"a:1", "http://b:2", "c:3"});
  auto v6 = parse_addresses("http://[::1]:50051,[::1]:50052");
  REQUIRE(v6);
  CHECK(*v6 == std::vector<std::string>{"http://[::1]:50051", "[::1]:50052"});
  for (const char* none : {"", " , ,", ","}) {
    auto r = parse_addresses(none);
    REQUIRE_FALSE(r);
    CHECK(r.status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("router: a batch is grouped by owner in input order and merged back, duplicates kept") {
  const SlotMap map = two_nodes(5);
  // Items: slots 10 (n1), 9000 (n2), 10 again (n1, a duplicate key), 100 (dead n3), 20 (n1),
  // 101 (unassigned), 16000 (n2).
  const std::vector<uint32_t> slots = {10, 9000, 10, 100, 20, 101, 16000};
  const std::vector<size_t> all = {0, 1, 2, 3, 4, 5, 6};
  auto groups = group_by_owner(slots, all, map);
  REQUIRE(groups.size() == 3);
  CHECK(groups[0].node == 1);
  CHECK(groups[0].address == "10.0.0.1:5001");
  CHECK(groups[0].items == std::vector<size_t>{0, 2, 4});
  CHECK(groups[1].node == 2);
  CHECK(groups[1].address == "10.0.0.2:5002");
  CHECK(groups[1].items == std::vector<size_t>{1, 6});
  CHECK(groups[2].node == kNoNode);
  CHECK(groups[2].address.empty());
  CHECK(groups[2].items == std::vector<size_t>{3, 5});

  // Each node answers its part in order; the merge puts every answer at its input position.
  std::vector<std::string> results(slots.size());
  for (const auto& g : groups) {
    std::vector<std::string> part;
    for (size_t i : g.items) {
      part.push_back("node" + std::to_string(g.node) + "#" + std::to_string(i));
    }
    scatter(g, part, results);
  }
  const std::string none = "node" + std::to_string(kNoNode);
  CHECK(results == std::vector<std::string>{"node1#0", "node2#1", "node1#2", none + "#3", "node1#4",
                                            none + "#5", "node2#6"});

  // A subset keeps its order too.
  const std::vector<size_t> some = {6, 4, 1};
  auto sub = group_by_owner(slots, some, map);
  REQUIRE(sub.size() == 2);
  CHECK(sub[0].node == 2);
  CHECK(sub[0].items == std::vector<size_t>{6, 1});
  CHECK(sub[1].node == 1);
  CHECK(sub[1].items == std::vector<size_t>{4});
}

TEST_CASE("router: refused items split into redirects by named owner and stale ones to regroup") {
  std::vector<Status> st = {
      Status(),                                    // 0 served
      refused(4, "10.0.0.4:5004", true),           // 1 moved to node 4
      refused(2, "10.0.0.2:5002", false),          // 2 stale map
      Status(Code::kNotFound, "absent"),           // 3 a plain answer
      refused(4, "10.0.0.4:5004", true),           // 4 moved to node 4 again
      Status(Code::kUnavailable, "node down"),     // 5 the node did not answer
      refused(5, "10.0.0.5:5005", true),           // 6 moved to node 5
      Status(Code::kFailedPrecondition, "other"),  // 7 not a routing matter
  };
  Refused r = refused_items(st);
  REQUIRE(r.moved.size() == 2);
  CHECK(r.moved[0].node == 4);
  CHECK(r.moved[0].address == "10.0.0.4:5004");
  CHECK(r.moved[0].items == std::vector<size_t>{1, 4});
  CHECK(r.moved[1].node == 5);
  CHECK(r.moved[1].address == "10.0.0.5:5005");
  CHECK(r.moved[1].items == std::vector<size_t>{6});
  CHECK(r.stale == std::vector<size_t>{2, 5});
  CHECK_FALSE(r.empty());

  // The stale ones regroup by the refreshed map: slot 9000 moved from node 2 to node 1.
  SlotMap newer = two_nodes(6);
  newer.owner[9000] = 1;
  const std::vector<uint32_t> slots = {10, 20, 9000, 30, 40, 16000, 50, 60};
  auto again = group_by_owner(slots, r.stale, newer);
  REQUIRE(again.size() == 2);
  CHECK(again[0].node == 1);
  CHECK(again[0].items == std::vector<size_t>{2});
  CHECK(again[1].node == 2);
  CHECK(again[1].items == std::vector<size_t>{5});

  CHECK(refused_items(std::vector<Status>{Status(), Status(Code::kNotFound, "x")}).empty());
}

TEST_CASE("router: a map refresh keeps the highest epoch and stops once it has the one wanted") {
  std::map<std::string, Result<SlotMap>> answers = {
      {"a", two_nodes(3)}, {"b", Status(Code::kUnavailable, "b is down")},
      {"c", two_nodes(7)}, {"d", two_nodes(5)},
      {"e", two_nodes(9)},
  };
  std::vector<std::string> asked;
  MapFetch fetch = [&](const std::string& a) -> Result<SlotMap> {
    asked.push_back(a);
    return answers.at(a);
  };
  const std::vector<std::string> order = {"a", "b", "c", "d", "e"};

  SECTION("nobody reaches the wanted epoch: everyone is asked, the highest wins") {
    auto m = newest_map(order, 10, fetch);
    REQUIRE(m);
    CHECK(m->epoch == 9);
    CHECK(asked == order);
  }
  SECTION("the first that reaches it ends the search, an older later answer never replaces it") {
    auto m = newest_map(order, 6, fetch);
    REQUIRE(m);
    CHECK(m->epoch == 7);
    CHECK(asked == std::vector<std::string>{"a", "b", "c"});
  }
  SECTION("no answer: the last failure, with context") {
    const std::vector<std::string> down = {"b"};
    auto m = newest_map(down, 1, fetch);
    REQUIRE_FALSE(m);
    CHECK(m.status().code() == Code::kUnavailable);
    CHECK(m.status().message().find("b is down") != std::string::npos);
  }
}
