// The controller's decisions, as pure functions of what etcd holds (so any node can take over as
// controller at any time, and the rules are unit-tested without etcd).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/slot_map.h"

namespace kvrdma::cluster {

// Owners that give every node in `nodes` floor or ceil(kSlots / N) slots, changing as few slots
// as possible from `current` (kSlots entries, or empty): a slot stays with its owner when the
// owner is in `nodes` and below its quota; slots of nodes not in `nodes`, unassigned slots and
// slots above quota go to the nodes furthest below quota (lowest id on ties, so the result is
// deterministic). Empty `nodes`: every slot kNoNode.
std::vector<uint32_t> balanced_owners(const std::vector<uint32_t>& current,
                                      std::span<const uint32_t> nodes);

// The next map the controller publishes, or nullopt when `current` needs no change.
//   registered: nodes whose etcd registration (lease) is alive, with their state.
//   handed_off: node id -> the map epoch in which that node finished moving out every slot it
//               had to move (it writes this after the last value went over).
// Rules, applied in order to a copy of `current` (epoch + 1, nodes = registered, controller):
//  1. A slot whose owner is not registered: owner = its next owner when that one is registered
//     (the values in flight are lost: a cache), else unassigned. next_owner cleared.
//  2. A moving slot whose next owner is not registered: the move is cancelled (next cleared).
//  3. Moves whose source handed off in the current epoch finish: owner = next owner.
//  4. balanced_owners over the registered "active" nodes is the target: an unassigned slot gets
//     its target owner at once (also while other slots move: a dead node's keys must be served
//     again within its lease); when no slot is moving any more, a slot whose owner is registered
//     but is not the target gets next_owner = target (a move, values go over).
//  Replicas (docs/cluster.md "Replicas"; `replicas` is used for the first map only, later maps
//  keep current.replicas):
//  1'. Before rule 1 applies, a dead owner's slot goes to its first ready registered replica,
//      else to its next owner, else to its first registered (not yet filled) replica.
//  5. The replicas of slots whose owner wrote filled/<id> = current epoch become ready, except
//     slots that change owner or were moving in the current epoch (a fill during a move misses
//     the keys already moved out; the slot's owner after the move fills it).
//  6. assign_replicas tops every slot up to replicas - 1 copies.
// nullopt when owners, next owners, replicas and the node list come out unchanged.
std::optional<SlotMap> next_map(const SlotMap& current, std::span<const NodeInfo> registered,
                                const std::map<uint32_t, uint64_t>& handed_off,
                                uint32_t controller_id,
                                const std::map<uint32_t, uint64_t>& filled = {},
                                uint32_t replicas = 1);

// The host part of a node address ("10.0.0.5:50051" -> "10.0.0.5", "[::1]:1" -> "[::1]").
std::string host_of(std::string_view address);

// Replica placement over `map` (its owners, next owners, nodes and `replicas` already set):
// drops replicas on nodes that are not active members, on the slot's owner or next owner, and
// duplicates; then fills each empty seat of an owned slot with the active node holding the
// fewest replicas so far, preferring one whose host no copy of the slot is on yet, lowest id on
// ties. New replicas are not ready. Existing ones stay (fewest copies move).
void assign_replicas(SlotMap& map);

}  // namespace kvrdma::cluster
