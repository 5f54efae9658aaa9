// The routing decisions of the client (Client::Impl) as plain functions, so they are tested
// without servers: the address list, grouping a batch by owner and merging it back in input
// order, picking out the items a node refused, and choosing the newest map. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/slot_map.h"
#include "kvrdma/status.h"

namespace kvrdma::client {

// The addresses of a comma-separated --server-addr, trimmed of blanks, empty ones dropped,
// duplicates kept once (first place wins). INVALID_ARGUMENT when none is left.
Result<std::vector<std::string>> parse_addresses(std::string_view list);

// Items (indices into the caller's input) that go to one node, in input order.
struct OwnerGroup {
  uint32_t node = cluster::kNoNode;  // kNoNode: the map gives their slot no (known) owner
  std::string address;               // from the map (or a redirect); empty when unknown
  std::vector<size_t> items;
};

// Groups `items` by the owner of their slot (`slots[i]` is item i's slot) in `map`. Groups come
// in order of their first item; an owner the map does not list lands in the kNoNode group.
std::vector<OwnerGroup> group_by_owner(std::span<const uint32_t> slots,
                                       std::span<const size_t> items, const cluster::SlotMap& map);

// Groups `items` by the node each goes to (`nodes[i]` for item i, as group_by_owner does with
// owners): for get_many, whose items may go to replicas.
std::vector<OwnerGroup> group_by_node(std::span<const uint32_t> nodes,
                                      std::span<const size_t> items, const cluster::SlotMap& map);

// Puts group results back: results[group.items[j]] = part[j]. `part` has one entry per item.
template <class R>
void scatter(const OwnerGroup& group, std::vector<R>& part, std::vector<R>& results) {
  for (size_t j = 0; j < group.items.size() && j < part.size(); ++j) {
    results[group.items[j]] = std::move(part[j]);
  }
}

// What to do with the items of a batch that came back refused. `moved`: a node redirected them
// while their slot moves: ask the named owner once, keep the map. `stale`: refused because our
// map is old (wrong owner, not moved) or the node was unreachable (UNAVAILABLE): regroup them
// after one map refresh.
struct Refused {
  std::vector<OwnerGroup> moved;
  std::vector<size_t> stale;
  bool empty() const { return moved.empty() && stale.empty(); }
};
Refused refused_items(std::span<const Status> statuses);

// Asks `addresses` in order for their map (`fetch`), keeping the highest epoch seen, and stops as
// soon as one reaches `want_epoch`. The error of the last failure when nobody answered.
using MapFetch = std::function<Result<cluster::SlotMap>(const std::string& address)>;
Result<cluster::SlotMap> newest_map(std::span<const std::string> addresses, uint64_t want_epoch,
                                    const MapFetch& fetch);

// True when `host` (an address without its port) names this machine: a loopback address,
// "localhost", or this host's name. For read_from = nearest.
bool is_local_host(std::string_view host);

}  // namespace kvrdma::client
