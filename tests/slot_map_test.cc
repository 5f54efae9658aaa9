#include "cluster/slot_map.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace kvrdma::cluster {
namespace {

// CRC16/XMODEM bit by bit: an independent reference for the table-driven slot_of.
uint32_t reference_slot(std::string_view bytes) {
  uint16_t crc = 0;
  for (unsigned char c : bytes) {
    crc = static_cast<uint16_t>(crc ^ (c << 8));
    for (int b = 0; b < 8; ++b) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc % kSlots;
}

SlotMap sample_map() {
  SlotMap m;
  m.cluster = "c1";
  m.epoch = 7;
  m.controller = 2;
  m.nodes = {NodeInfo{0, "10.0.0.1:7000", "active", "mock"},
             NodeInfo{2, "10.0.0.2:7000", "leaving", "tcp"},
             NodeInfo{5, "10.0.0.3:7000", "active", "shm"}};
  m.owner.assign(kSlots, kNoNode);
  m.next_owner.assign(kSlots, kNoNode);
  for (uint32_t s = 0; s < kSlots; ++s) m.owner[s] = (s % 3 == 0) ? 0 : (s % 3 == 1 ? 2 : 5);
  m.owner[100] = kNoNode;
  m.next_owner[4] = 5;
  m.next_owner[16383] = 0;
  return m;
}

}  // namespace

TEST_CASE("slot_of matches CRC16/XMODEM mod 16384", "[slot_map]") {
  CHECK(slot_of("123456789") == 12739u);  // CRC16/XMODEM check value 0x31C3
  CHECK(slot_of("") == 0u);
  CHECK(slot_of("a") == reference_slot("a"));
  CHECK(slot_of("foo") == reference_slot("foo"));
  for (int i = 0; i < 1000; ++i) {
    std::string key = "key:" + std::to_string(i);
    REQUIRE(slot_of(key) == reference_slot(key));
  }
  std::string binary("\x00\xff\x80\x01", 4);
  CHECK(slot_of(binary) == reference_slot(binary));
}

TEST_CASE("slot_of hashes only a non-empty {tag}", "[slot_map]") {
  CHECK(slot_of("{user1}.a") == slot_of("{user1}.b"));
  CHECK(slot_of("{user1}.a") == reference_slot("user1"));
  CHECK(slot_of("prefix{user1}suffix") == reference_slot("user1"));
  // Only the first '{' and the next '}' count.
  CHECK(slot_of("{a}{b}") == reference_slot("a"));
  CHECK(slot_of("x{a{b}y") == reference_slot("a{b"));
  // No tag: the whole key is hashed.
  CHECK(slot_of("{}") == reference_slot("{}"));
  CHECK(slot_of("{") == reference_slot("{"));
  CHECK(slot_of("}{") == reference_slot("}{"));
  CHECK(slot_of("{}user1") == reference_slot("{}user1"));
  CHECK(slot_of("user1}") == reference_slot("user1}"));
}

TEST_CASE("slot_of spreads keys over every slot", "[slot_map]") {
  constexpr uint32_t kKeys = 400000;
  std::vector<uint32_t> per_slot(kSlots, 0);
  for (uint32_t i = 0; i < kKeys; ++i) ++per_slot[slot_of("key:" + std::to_string(i))];
  auto [lo, hi] = std::minmax_element(per_slot.begin(), per_slot.end());
  const double mean = static_cast<double>(kKeys) / kSlots;  // ~24.4
  CHECK(*lo > 0u);
  CHECK(*hi < 3 * mean);
}

TEST_CASE("SlotMap helpers answer from owners and next owners", "[slot_map]") {
  SlotMap m = sample_map();
  REQUIRE(m.node(2) != nullptr);
  CHECK(m.node(2)->address == "10.0.0.2:7000");
  CHECK(m.node(1) == nullptr);
  CHECK(m.node(kNoNode) == nullptr);
  CHECK(m.owner_of(3) == 0u);
  CHECK(m.owner_of(100) == kNoNode);
  CHECK(m.next_owner_of(4) == 5u);
  CHECK(m.next_owner_of(5) == kNoNode);
  CHECK(m.moving());
  CHECK(m.slots_of(0) == 5462u);  // slots 0, 3, ..., 16383: 5462 of them
  SlotMap empty;
  CHECK(empty.owner_of(0) == kNoNode);
  CHECK(empty.next_owner_of(0) == kNoNode);
  CHECK_FALSE(empty.moving());
}

TEST_CASE("SlotMap survives its wire form unchanged", "[slot_map]") {
  SECTION("a moving map") {
    SlotMap m = sample_map();
    v1::ClusterMap wire;
    to_proto(m, &wire);
    CHECK(wire.owner(0) == 1u);    // node 0 travels as 1
    CHECK(wire.owner(100) == 0u);  // unassigned travels as 0
    CHECK(wire.controller() == 3u);
    auto back = from_proto(wire);
    REQUIRE(back.is_ok());
    CHECK(back->cluster == m.cluster);
    CHECK(back->epoch == m.epoch);
    CHECK(back->controller == m.controller);
    CHECK(back->nodes == m.nodes);
    CHECK(back->owner == m.owner);
    CHECK(back->next_owner == m.next_owner);
  }
  SECTION("a settled map sends no next owners") {
    SlotMap m = sample_map();
    m.next_owner.clear();
    v1::ClusterMap wire;
    to_proto(m, &wire);
    CHECK(wire.next_owner_size() == 0);
    auto back = from_proto(wire);
    REQUIRE(back.is_ok());
    CHECK(back->owner == m.owner);
    CHECK(back->next_owner.empty());
    CHECK_FALSE(back->moving());
  }
  SECTION("no map yet") {
    SlotMap m;
    v1::ClusterMap wire;
    to_proto(m, &wire);
    auto back = from_proto(wire);
    REQUIRE(back.is_ok());
    CHECK(back->epoch == 0u);
    CHECK(back->owner.empty());
    CHECK(back->controller == kNoNode);
  }
  SECTION("nodes come back sorted by id") {
    v1::ClusterMap wire;
    to_proto(sample_map(), &wire);
    wire.mutable_nodes()->SwapElements(0, 2);
    auto back = from_proto(wire);
    REQUIRE(back.is_ok());
    CHECK(back->nodes == sample_map().nodes);
  }
}

TEST_CASE("from_proto rejects malformed maps", "[slot_map]") {
  v1::ClusterMap wire;
  to_proto(sample_map(), &wire);
  SECTION("too few owners") {
    wire.mutable_owner()->RemoveLast();
    auto r = from_proto(wire);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK(r.status().message().find("16383") != std::string::npos);
  }
  SECTION("too many next owners") {
    wire.add_next_owner(0);
    auto r = from_proto(wire);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
  }
  SECTION("a node listed twice") {
    *wire.add_nodes() = wire.nodes(1);
    auto r = from_proto(wire);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
  }
  SECTION("the reserved node id") {
    wire.mutable_nodes(0)->set_node_id(kNoNode);
    auto r = from_proto(wire);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
  }
  SECTION("an epoch without owners") {
    wire.clear_owner();
    wire.clear_next_owner();
    auto r = from_proto(wire);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
  }
}

}  // namespace kvrdma::cluster
