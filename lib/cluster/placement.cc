#include "cluster/placement.h"

#include <algorithm>
#include <queue>
#include <unordered_map>

namespace kvrdma::cluster {
namespace {

// A node's place in the balancing: its quota and how many slots it holds so far.
struct Share {
  uint32_t id = kNoNode;
  uint32_t current = 0;  // slots it owns in `current`
  uint32_t quota = 0;    // floor or ceil(kSlots / N)
  uint32_t kept = 0;     // slots it holds in the result so far
};

// An empty owner vector (no map yet) means every slot unassigned.
std::vector<uint32_t> owners_or_unassigned(const std::vector<uint32_t>& owner) {
  return owner.empty() ? std::vector<uint32_t>(kSlots, kNoNode) : owner;
}

// A next-owner vector with no move in it is kept empty, as the wire form and SlotMap expect.
void drop_if_idle(std::vector<uint32_t>& next_owner) {
  if (std::all_of(next_owner.begin(), next_owner.end(), [](uint32_t n) { return n == kNoNode; })) {
    next_owner.clear();
  }
}

}  // namespace

std::vector<uint32_t> balanced_owners(const std::vector<uint32_t>& current,
                                      std::span<const uint32_t> nodes) {
  std::vector<uint32_t> ids(nodes.begin(), nodes.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  ids.erase(std::remove(ids.begin(), ids.end(), kNoNode), ids.end());
  std::vector<uint32_t> result(kSlots, kNoNode);
  if (ids.empty()) return result;

  std::vector<Share> shares(ids.size());
  std::unordered_map<uint32_t, uint32_t> index;  // node id -> position in `shares`
  index.reserve(ids.size() * 2);
  for (size_t i = 0; i < ids.size(); ++i) {
    shares[i].id = ids[i];
    index.emplace(ids[i], static_cast<uint32_t>(i));
  }
  const bool have_current = current.size() == kSlots;
  std::vector<uint32_t> current_index(kSlots, kNoNode);  // slot -> share index, or kNoNode
  if (have_current) {
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (auto it = index.find(current[s]); it != index.end()) {
        current_index[s] = it->second;
        ++shares[it->second].current;
      }
    }
  }

  // The kSlots % N ceil quotas go to the nodes holding the most slots now (lowest id on ties):
  // a node already at or above ceil then keeps one more slot, which is what minimises movement.
  const uint32_t n = static_cast<uint32_t>(shares.size());
  const uint32_t base = kSlots / n;
  const uint32_t extra = kSlots % n;
  std::vector<uint32_t> by_holding(n);
  for (uint32_t i = 0; i < n; ++i) by_holding[i] = i;
  std::sort(by_holding.begin(), by_holding.end(), [&](uint32_t a, uint32_t b) {
    if (shares[a].current != shares[b].current) return shares[a].current > shares[b].current;
    return shares[a].id < shares[b].id;
  });
  for (uint32_t r = 0; r < n; ++r) shares[by_holding[r]].quota = base + (r < extra ? 1 : 0);

  // A slot stays put while its owner is below quota; the rest form the pool.
  std::vector<uint32_t> pool;
  for (uint32_t s = 0; s < kSlots; ++s) {
    uint32_t i = current_index[s];
    if (i != kNoNode && shares[i].kept < shares[i].quota) {
      result[s] = shares[i].id;
      ++shares[i].kept;
    } else {
      pool.push_back(s);
    }
  }

  // Pool slots, in slot order, each to the node furthest below quota (lowest id on ties). The
  // pool holds exactly the total shortfall, so every node ends at its quota.
  auto further_below = [&](uint32_t a, uint32_t b) {
    uint32_t da = shares[a].quota - shares[a].kept;
    uint32_t db = shares[b].quota - shares[b].kept;
    if (da != db) return da < db;  // priority_queue pops the "largest": the biggest shortfall
    return shares[a].id > shares[b].id;
  };
  std::priority_queue<uint32_t, std::vector<uint32_t>, decltype(further_below)> below(
      further_below);
  for (uint32_t i = 0; i < n; ++i) {
    if (shares[i].kept < shares[i].quota) below.push(i);
  }
  for (uint32_t s : pool) {
    uint32_t i = below.top();
    below.pop();
    result[s] = shares[i].id;
    if (++shares[i].kept < shares[i].quota) below.push(i);
  }
  return result;
}

std::string host_of(std::string_view address) {
  if (auto scheme = address.find("://"); scheme != std::string_view::npos) {
    address.remove_prefix(scheme + 3);
  }
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || address.find(']', colon) != std::string_view::npos) {
    return std::string(address);
  }
  return std::string(address.substr(0, colon));
}

void assign_replicas(SlotMap& map) {
  const uint32_t seats = map.seats();
  if (seats == 0 || map.owner.size() != kSlots) {
    map.replica.clear();
    map.replica_ready.clear();
    return;
  }
  if (map.replica.size() != size_t(kSlots) * seats) {
    map.replica.assign(size_t(kSlots) * seats, kNoNode);
    map.replica_ready.assign(size_t(kSlots) * seats, 0);
  }
  std::vector<uint32_t> active;
  std::map<uint32_t, std::string> host;
  for (const NodeInfo& n : map.nodes) {
    host[n.id] = host_of(n.address);
    if (n.state == "active") active.push_back(n.id);
  }
  auto is_active = [&](uint32_t id) {
    return std::binary_search(active.begin(), active.end(), id);
  };
  std::map<uint32_t, uint32_t> load;  // replicas held, over every slot
  for (uint32_t id : active) load[id] = 0;
  // Pass 1: what stays.
  for (uint32_t s = 0; s < kSlots; ++s) {
    uint32_t* seat = &map.replica[size_t(s) * seats];
    uint8_t* ready = &map.replica_ready[size_t(s) * seats];
    const uint32_t owner = map.owner[s], next = map.next_owner_of(s);
    for (uint32_t i = 0; i < seats; ++i) {
      const uint32_t r = seat[i];
      const bool duplicate = std::find(seat, seat + i, r) != seat + i;
      if (r == kNoNode || owner == kNoNode || r == owner || r == next || !is_active(r) ||
          duplicate) {
        seat[i] = kNoNode;
        ready[i] = 0;
      } else {
        ++load[r];
      }
    }
  }
  // Pass 2: empty seats of owned slots.
  for (uint32_t s = 0; s < kSlots; ++s) {
    const uint32_t owner = map.owner[s];
    if (owner == kNoNode) continue;
    uint32_t* seat = &map.replica[size_t(s) * seats];
    uint8_t* ready = &map.replica_ready[size_t(s) * seats];
    for (uint32_t i = 0; i < seats; ++i) {
      if (seat[i] != kNoNode) continue;
      const uint32_t next = map.next_owner_of(s);
      std::vector<std::string> used{host[owner]};
      for (uint32_t j = 0; j < seats; ++j) {
        if (seat[j] != kNoNode) used.push_back(host[seat[j]]);
      }
      uint32_t best = kNoNode;
      bool best_new_host = false;
      for (uint32_t id : active) {
        if (id == owner || id == next || std::find(seat, seat + seats, id) != seat + seats) {
          continue;
        }
        const bool new_host = std::find(used.begin(), used.end(), host[id]) == used.end();
        if (best == kNoNode || (new_host && !best_new_host) ||
            (new_host == best_new_host && load[id] < load[best])) {
          best = id;
          best_new_host = new_host;
        }
      }
      if (best == kNoNode) break;  // fewer live nodes than copies
      seat[i] = best;
      ready[i] = 0;
      ++load[best];
    }
  }
  if (std::all_of(map.replica.begin(), map.replica.end(),
                  [](uint32_t r) { return r == kNoNode; })) {
    map.replica.clear();
    map.replica_ready.clear();
  }
}

std::optional<SlotMap> next_map(const SlotMap& current, std::span<const NodeInfo> registered,
                                const std::map<uint32_t, uint64_t>& handed_off,
                                uint32_t controller_id, const std::map<uint32_t, uint64_t>& filled,
                                uint32_t replicas) {
  SlotMap next;
  next.cluster = current.cluster;
  next.epoch = current.epoch + 1;
  next.controller = controller_id;
  next.nodes.assign(registered.begin(), registered.end());
  std::stable_sort(next.nodes.begin(), next.nodes.end(),
                   [](const NodeInfo& a, const NodeInfo& b) { return a.id < b.id; });
  next.owner = owners_or_unassigned(current.owner);
  next.next_owner = current.next_owner.size() == kSlots ? current.next_owner
                                                        : std::vector<uint32_t>(kSlots, kNoNode);
  auto is_registered = [&](uint32_t id) { return id != kNoNode && next.node(id) != nullptr; };
  next.replicas =
      current.epoch == 0 ? std::clamp<uint32_t>(replicas, 1, kMaxReplicas) : current.replicas;
  const uint32_t seats = next.seats();
  if (current.has_replicas() && current.seats() == seats) {
    next.replica = current.replica;
    next.replica_ready = current.replica_ready;
  } else if (seats > 0) {
    next.replica.assign(size_t(kSlots) * seats, kNoNode);
    next.replica_ready.assign(size_t(kSlots) * seats, 0);
  }
  // Rule 1': the replica to promote for a slot whose owner died: a filled one first (it holds
  // every acknowledged write), else none here (the next owner), else an unfilled one.
  auto promote = [&](uint32_t s, bool want_ready) -> uint32_t {
    for (uint32_t i = 0; i < seats; ++i) {
      const size_t at = size_t(s) * seats + i;
      const uint32_t r = next.replica[at];
      if (is_registered(r) && (next.replica_ready[at] != 0) == want_ready) {
        next.replica[at] = kNoNode;
        next.replica_ready[at] = 0;
        return r;
      }
    }
    return kNoNode;
  };

  for (uint32_t s = 0; s < kSlots; ++s) {
    uint32_t& owner = next.owner[s];
    uint32_t& dest = next.next_owner[s];
    // Rule 1: the owner's lease is gone; its values are lost (a cache), the slot is not.
    if (owner != kNoNode && !is_registered(owner)) {
      uint32_t heir = seats > 0 ? promote(s, true) : kNoNode;
      if (heir == kNoNode && is_registered(dest)) heir = dest;
      if (heir == kNoNode && seats > 0) heir = promote(s, false);
      owner = heir;
      dest = kNoNode;
    }
    // Rule 2: the destination is gone; the source keeps the slot.
    if (dest != kNoNode && !is_registered(dest)) dest = kNoNode;
    // Rule 3: the source moved everything it had to in the current epoch.
    if (dest != kNoNode) {
      auto it = handed_off.find(owner);
      if (it != handed_off.end() && it->second == current.epoch) {
        owner = dest;
        dest = kNoNode;
      }
    }
  }

  // Rule 4: new moves start only once every earlier one has finished, so a slot never has two
  // moves in flight and a source's handoff covers all of its moves. An unassigned slot (its
  // owner died) gets its target at once even while moves are in flight: no values move for it,
  // and its keys must be served again within a lease of the death.
  std::vector<uint32_t> active;
  for (const NodeInfo& n : next.nodes) {
    if (n.state == "active") active.push_back(n.id);
  }
  const bool moving = std::any_of(next.next_owner.begin(), next.next_owner.end(),
                                  [](uint32_t d) { return d != kNoNode; });
  const bool unassigned =
      std::find(next.owner.begin(), next.owner.end(), kNoNode) != next.owner.end();
  if (!moving || unassigned) {
    std::vector<uint32_t> target = balanced_owners(next.owner, active);
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (target[s] == kNoNode || target[s] == next.owner[s]) continue;
      if (next.owner[s] == kNoNode) {
        next.owner[s] = target[s];  // nothing to move: nobody holds values for it
      } else if (!moving) {
        next.next_owner[s] = target[s];
      }
    }
  }
  // Rule 5: the owner filled every replica of its slots in the current epoch. Only a slot that
  // keeps its owner: one that just came to a node by a move or a promotion was not that node's
  // to fill in the current epoch, whatever it wrote. Nor a slot that was moving in the current
  // epoch: its owner's mover copies keys to the next owner and erases them here as it goes, so
  // a fill run meanwhile missed the keys already moved, and the next owner does not push them
  // again (the replicas are meant to have them): the new owner fills the replica after the move.
  if (seats > 0 && !next.replica.empty()) {
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (current.owner_of(s) != next.owner[s]) continue;
      if (current.next_owner_of(s) != kNoNode) continue;
      auto it = filled.find(next.owner[s]);
      if (it == filled.end() || it->second != current.epoch) continue;
      for (uint32_t i = 0; i < seats; ++i) {
        const size_t at = size_t(s) * seats + i;
        if (next.replica[at] != kNoNode) next.replica_ready[at] = 1;
      }
    }
  }
  // Rule 6.
  assign_replicas(next);
  drop_if_idle(next.next_owner);

  std::vector<uint32_t> old_next = current.next_owner;
  drop_if_idle(old_next);
  if (next.owner == owners_or_unassigned(current.owner) && next.next_owner == old_next &&
      next.nodes == current.nodes && next.replicas == current.replicas &&
      next.replica == current.replica && next.replica_ready == current.replica_ready) {
    return std::nullopt;
  }
  return next;
}

}  // namespace kvrdma::cluster
