#include "server/slot_drop.h"

#include <algorithm>

#include "common/logging.h"
#include "server/replication.h"

namespace kvrdma::server {

std::vector<bool> slots_to_drop(const cluster::SlotMap& before, const cluster::SlotMap& after,
                                uint32_t self, bool joining) {
  std::vector<bool> drop(cluster::kSlots, false);
  if (before.epoch == 0) return drop;
  for (uint32_t s = 0; s < cluster::kSlots; ++s) {
    const bool was_replica = before.replica_seat(s, self) >= 0;
    const bool is_replica = after.replica_seat(s, self) >= 0;
    const bool had = before.owner_of(s) == self || before.next_owner_of(s) == self || was_replica;
    const bool has = after.owner_of(s) == self || after.next_owner_of(s) == self || is_replica;
    // A new replica seat starts empty even when the node held the slot otherwise: what a next
    // owner had moved in, or an owner had left, carries no versions the fill could correct, so
    // a key deleted at the primary before the fill would come back at this replica.
    const bool joins = (!had && after.owner_of(s) == self) || (is_replica && !was_replica);
    drop[s] = joining ? joins : (had && !has);
  }
  return drop;
}

void drop_slots(ServerCore& core, const std::vector<bool>& slots, uint64_t epoch) {
  if (std::none_of(slots.begin(), slots.end(), [](bool b) { return b; })) return;
  auto in = [&](std::string_view key) { return slots[cluster::slot_of(key)]; };
  if (core.replication) core.replication->versions().forget_where(in, &slots);
  size_t dropped = 0;
  for (const std::string& k : core.store->keys_where(in)) dropped += core.store->erase(k);
  if (dropped > 0) {
    KVRDMA_LOG_INFO(
        "map epoch {}: dropped {} values of slots this node no longer serves or "
        "takes over empty",
        epoch, dropped);
  }
}

}  // namespace kvrdma::server
