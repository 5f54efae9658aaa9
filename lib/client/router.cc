#include "client/router.h"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "rpc/status_map.h"

namespace kvrdma::client {

Result<std::vector<std::string>> parse_addresses(std::string_view list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view a = list.substr(pos, comma - pos);
    while (!a.empty() && (a.front() == ' ' || a.front() == '\t')) a.remove_prefix(1);
    while (!a.empty() && (a.back() == ' ' || a.back() == '\t')) a.remove_suffix(1);
    if (!a.empty() && std::find(out.begin(), out.end(), a) == out.end()) out.emplace_back(a);
    pos = comma + 1;
  }
  if (out.empty()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("server address '{}' names no server; give host:port, or several "
                              "separated by commas",
                              list));
  }
  return out;
}

namespace {

template <class NodeOf>
std::vector<OwnerGroup> group_by(std::span<const size_t> items, const cluster::SlotMap& map,
                                 NodeOf node_of) {
  std::vector<OwnerGroup> groups;
  std::map<uint32_t, size_t> index;  // node -> its group
  for (size_t i : items) {
    uint32_t node = node_of(i);
    const cluster::NodeInfo* info = node == cluster::kNoNode ? nullptr : map.node(node);
    if (info == nullptr) node = cluster::kNoNode;
    auto [it, added] = index.try_emplace(node, groups.size());
    if (added) {
      groups.push_back(OwnerGroup{node, info ? info->address : std::string(), {}});
    }
    groups[it->second].items.push_back(i);
  }
  return groups;
}

}  // namespace

std::vector<OwnerGroup> group_by_owner(std::span<const uint32_t> slots,
                                       std::span<const size_t> items, const cluster::SlotMap& map) {
  return group_by(items, map, [&](size_t i) { return map.owner_of(slots[i]); });
}

std::vector<OwnerGroup> group_by_node(std::span<const uint32_t> nodes,
                                      std::span<const size_t> items, const cluster::SlotMap& map) {
  return group_by(items, map, [&](size_t i) { return nodes[i]; });
}

Refused refused_items(std::span<const Status> statuses) {
  Refused r;
  std::map<uint32_t, size_t> index;
  for (size_t i = 0; i < statuses.size(); ++i) {
    const Status& s = statuses[i];
    if (s.is_ok()) continue;
    if (auto w = rpc::wrong_owner_of(s)) {
      if (w->moved()) {
        auto [it, added] = index.try_emplace(w->owner_id(), r.moved.size());
        if (added) r.moved.push_back(OwnerGroup{w->owner_id(), w->owner_address(), {}});
        r.moved[it->second].items.push_back(i);
      } else {
        r.stale.push_back(i);
      }
    } else if (s.code() == Code::kUnavailable) {
      r.stale.push_back(i);
    }
  }
  return r;
}

Result<cluster::SlotMap> newest_map(std::span<const std::string> addresses, uint64_t want_epoch,
                                    const MapFetch& fetch) {
  Status last(Code::kUnavailable, "no node to ask for the cluster map");
  bool have = false;
  cluster::SlotMap best;
  for (const std::string& a : addresses) {
    auto m = fetch(a);
    if (!m) {
      last = m.status();
      continue;
    }
    if (!have || m->epoch > best.epoch) {
      best = std::move(*m);
      have = true;
    }
    if (best.epoch >= want_epoch) break;
  }
  if (!have) return last.with_context("asking the nodes for the cluster map");
  return best;
}

bool is_local_host(std::string_view host) {
  if (host == "localhost" || host == "[::1]" || host == "::1" || host.starts_with("127.")) {
    return true;
  }
  char name[256] = {};
  return gethostname(name, sizeof(name) - 1) == 0 && host == name;
}

}  // namespace kvrdma::client
