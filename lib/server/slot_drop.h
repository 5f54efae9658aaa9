// What a node drops when it installs a new cluster map (docs/cluster.md "Replicas"): values and
// version records of slots it no longer serves (they went away without a move: its lease had
// expired) and of slots it starts holding without their values: a slot given to it without a
// move (its owner died, or it was unassigned) starts empty, and so does a replica seat it
// takes, whatever it held of that slot before (as the slot's next owner when the move was cut
// short, or as its owner): the primary fills it, and a key deleted meanwhile must not come back
// from a leftover copy. A replica promoted to owner keeps what it holds.
#pragma once

#include <cstdint>
#include <vector>

#include "cluster/slot_map.h"
#include "server/service.h"

namespace kvrdma::server {

// The slots (flags by slot) node `self` drops on going from map `before` to `after`.
// `joining`: the slots it starts holding empty, dropped before `after` is installed so no write
// accepted under it is lost; otherwise the slots it stops holding, dropped after. None when
// `before` is the empty map (epoch 0: the node just started).
std::vector<bool> slots_to_drop(const cluster::SlotMap& before, const cluster::SlotMap& after,
                                uint32_t self, bool joining);

// Erases the values of `slots` from the store and forgets their versions (slot maxima and
// floors too). Logs how many values went, naming map `epoch`.
void drop_slots(ServerCore& core, const std::vector<bool>& slots, uint64_t epoch);

}  // namespace kvrdma::server
