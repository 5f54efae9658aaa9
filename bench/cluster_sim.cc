// cluster_sim: cluster mode's placement, simulated without servers.
//
// Mode "placement" (the default): for each cluster size N, keys "key:<i>" hash to slots
// (slot_of), balanced_owners places the slots on N nodes, and the program measures the largest
// node's keys against the mean and what one node joining or leaving moves (slots and keys, as a
// fraction of all), against the ideal (the newcomer's or the leaver's fair share).
//
// Mode "control-plane" (cluster_sim_control.h): N real nodes in this process against one
// loopback etcd: registration, etcd requests at steady state, failover after node deaths.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/placement.h"
#include "cluster/slot_map.h"
#include "cluster_sim_control.h"

namespace {

using kvrdma::cluster::balanced_owners;
using kvrdma::cluster::kSlots;

enum class Mode { kPlacement, kControlPlane };

struct Options {
  Mode mode = Mode::kPlacement;
  uint64_t keys = 2'000'000;
  std::vector<uint32_t> nodes = {16, 64, 100, 300, 1000};
  bool nodes_given = false;  // control-plane mode defaults to 100 nodes instead
  int changes = 8;           // joins and leaves averaged per cluster size
  bool json = false;
  cluster_sim::ControlPlaneOptions control;
};

void usage() {
  fmt::print(stderr,
             "usage: cluster_sim [--mode placement] [--keys N] [--nodes 16,64,...] "
             "[--changes K] [--json]\n"
             "       cluster_sim --mode control-plane [--nodes 100[,200...]] [--lease-ms 2000] "
             "[--kills 3] [--window-ms 10000] [--etcd-endpoints http://host:port] [--json]\n");
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9' || v > UINT64_MAX / 10) return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// Parses the flags; prints what is wrong and returns nullopt on a bad one.
std::optional<Options> parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::optional<std::string_view> {
      if (i + 1 >= argc) {
        fmt::print(stderr, "{} needs a value\n", arg);
        return std::nullopt;
      }
      return std::string_view(argv[++i]);
    };
    if (arg == "--json") {
      o.json = true;
    } else if (arg == "--mode") {
      auto v = value();
      if (!v) return std::nullopt;
      if (*v == "placement") {
        o.mode = Mode::kPlacement;
      } else if (*v == "control-plane") {
        o.mode = Mode::kControlPlane;
      } else {
        fmt::print(stderr, "--mode {}: unknown; the modes are: placement, control-plane\n", *v);
        return std::nullopt;
      }
    } else if (arg == "--lease-ms" || arg == "--kills" || arg == "--window-ms") {
      auto v = value();
      if (!v) return std::nullopt;
      auto n = parse_u64(*v);
      const uint64_t low = arg == "--kills" ? 0 : 1000, high = arg == "--kills" ? 50 : 600'000;
      if (!n || *n < low || *n > high) {
        fmt::print(stderr, "{} {}: give a count from {} to {}\n", arg, *v, low, high);
        return std::nullopt;
      }
      if (arg == "--lease-ms") o.control.lease_ms = *n;
      else if (arg == "--kills") o.control.kills = static_cast<int>(*n);
      else o.control.window_ms = *n;
    } else if (arg == "--etcd-endpoints") {
      auto v = value();
      if (!v) return std::nullopt;
      o.control.etcd_endpoints = std::string(*v);
    } else if (arg == "--keys" || arg == "--changes") {
      auto v = value();
      if (!v) return std::nullopt;
      auto n = parse_u64(*v);
      if (!n || *n == 0 || (arg == "--changes" && *n > 1000)) {
        fmt::print(stderr, "{} {}: give a positive count (--changes at most 1000)\n", arg, *v);
        return std::nullopt;
      }
      if (arg == "--keys") o.keys = *n;
      else o.changes = static_cast<int>(*n);
    } else if (arg == "--nodes") {
      auto v = value();
      if (!v) return std::nullopt;
      o.nodes.clear();
      o.nodes_given = true;
      std::string_view rest = *v;
      while (!rest.empty()) {
        size_t comma = rest.find(',');
        auto n = parse_u64(rest.substr(0, comma));
        if (!n || *n < 2 || *n > 100'000) {
          fmt::print(stderr, "--nodes {}: give a comma-separated list of sizes from 2 to 100000\n",
                     *v);
          return std::nullopt;
        }
        o.nodes.push_back(static_cast<uint32_t>(*n));
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
      if (o.nodes.empty()) {
        fmt::print(stderr, "--nodes needs at least one size\n");
        return std::nullopt;
      }
    } else {
      fmt::print(stderr, "unknown flag {}\n", arg);
      usage();
      return std::nullopt;
    }
  }
  if (o.mode == Mode::kControlPlane) {
    if (!o.nodes_given) o.nodes = {100};
    for (uint32_t n : o.nodes) {
      if (n > 1000 || n <= static_cast<uint32_t>(o.control.kills)) {
        fmt::print(stderr,
                   "--nodes {} with --kills {}: control-plane mode runs at most 1000 "
                   "nodes and needs more nodes than kills\n",
                   n, o.control.kills);
        return std::nullopt;
      }
    }
    o.control.nodes = o.nodes;
    o.control.json = o.json;
  }
  return o;
}

// One cluster size's figures.
struct Row {
  uint32_t nodes = 0;
  double largest_over_mean = 0;  // keys on the fullest node / keys per node
  double join_slots = 0;         // fraction of slots moved per join (mean)
  double join_keys = 0;          // fraction of keys moved per join (mean)
  double join_ideal = 0;         // the newcomer's fair share 1/(size after the join), mean
  double leave_slots = 0;
  double leave_keys = 0;
  double place_us = 0;  // one balanced_owners call, mean
};

// Slots and keys whose owner differs between two placements, as fractions of all.
std::pair<double, double> moved(const std::vector<uint32_t>& before,
                                const std::vector<uint32_t>& after,
                                const std::vector<uint64_t>& keys_in_slot, uint64_t keys) {
  uint64_t slots = 0, moved_keys = 0;
  for (uint32_t s = 0; s < kSlots; ++s) {
    if (before[s] != after[s]) {
      ++slots;
      moved_keys += keys_in_slot[s];
    }
  }
  return {static_cast<double>(slots) / kSlots, static_cast<double>(moved_keys) / keys};
}

Row simulate(uint32_t n, const Options& o, const std::vector<uint64_t>& keys_in_slot) {
  using Clock = std::chrono::steady_clock;
  Clock::duration placing{};
  int calls = 0;
  auto place = [&](const std::vector<uint32_t>& current, const std::vector<uint32_t>& nodes) {
    auto start = Clock::now();
    auto owner = balanced_owners(current, nodes);
    placing += Clock::now() - start;
    ++calls;
    return owner;
  };

  Row row;
  row.nodes = n;
  std::vector<uint32_t> nodes(n);
  for (uint32_t i = 0; i < n; ++i) nodes[i] = i;
  const auto base = place({}, nodes);

  std::vector<uint64_t> per_node(n, 0);
  for (uint32_t s = 0; s < kSlots; ++s) per_node[base[s]] += keys_in_slot[s];
  const double mean = static_cast<double>(o.keys) / n;
  row.largest_over_mean =
      static_cast<double>(*std::max_element(per_node.begin(), per_node.end())) / mean;

  // Successive joins: N -> N+1 -> ... (each measured against the map before it).
  auto current = base;
  auto grown = nodes;
  for (int j = 0; j < o.changes; ++j) {
    grown.push_back(n + static_cast<uint32_t>(j));
    auto next = place(current, grown);
    auto [slots, keys] = moved(current, next, keys_in_slot, o.keys);
    row.join_slots += slots / o.changes;
    row.join_keys += keys / o.changes;
    row.join_ideal += 1.0 / static_cast<double>(grown.size()) / o.changes;
    current = std::move(next);
  }
  // Leaves from the N-node map, leavers spread over the ids.
  for (int j = 0; j < o.changes; ++j) {
    uint32_t leaver = static_cast<uint32_t>((static_cast<uint64_t>(j) * n) / o.changes);
    auto shrunk = nodes;
    shrunk.erase(shrunk.begin() + leaver);
    auto next = place(base, shrunk);
    auto [slots, keys] = moved(base, next, keys_in_slot, o.keys);
    row.leave_slots += slots / o.changes;
    row.leave_keys += keys / o.changes;
  }
  row.place_us = std::chrono::duration<double, std::micro>(placing).count() / calls;
  return row;
}

int run_placement(const Options& o) {
  std::vector<uint64_t> keys_in_slot(kSlots, 0);
  std::string key;
  for (uint64_t i = 0; i < o.keys; ++i) {
    key = fmt::format("key:{}", i);
    ++keys_in_slot[kvrdma::cluster::slot_of(key)];
  }
  if (!o.json) {
    fmt::print(
        "{} keys over {} slots; joins: N -> N+1 -> ... -> N+{} (ideal: the newcomer's "
        "share 1/size, mean); leaves: {} different nodes from N (ideal 1/N)\n",
        o.keys, kSlots, o.changes, o.changes);
    fmt::print(
        "| nodes | largest node keys / mean | slots moved per join | keys moved per join "
        "| ideal per join | slots moved per leave | keys moved per leave | ideal per leave "
        "| balanced_owners us |\n");
    fmt::print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  }
  for (uint32_t n : o.nodes) {
    Row r = simulate(n, o, keys_in_slot);
    const double ideal_join = r.join_ideal, ideal_leave = 1.0 / n;
    if (o.json) {
      fmt::print(
          "{{\"mode\":\"placement\",\"keys\":{},\"nodes\":{},\"largest_over_mean\":{:.4f},"
          "\"join_slots\":{:.5f},\"join_keys\":{:.5f},\"ideal_join\":{:.5f},"
          "\"leave_slots\":{:.5f},\"leave_keys\":{:.5f},\"ideal_leave\":{:.5f},"
          "\"balanced_owners_us\":{:.1f}}}\n",
          o.keys, n, r.largest_over_mean, r.join_slots, r.join_keys, ideal_join, r.leave_slots,
          r.leave_keys, ideal_leave, r.place_us);
    } else {
      fmt::print(
          "| {} | {:.3f} | {:.3f}% | {:.3f}% | {:.3f}% | {:.3f}% | {:.3f}% | {:.3f}% "
          "| {:.0f} |\n",
          n, r.largest_over_mean, 100 * r.join_slots, 100 * r.join_keys, 100 * ideal_join,
          100 * r.leave_slots, 100 * r.leave_keys, 100 * ideal_leave, r.place_us);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto options = parse(argc, argv);
  if (!options) return 2;
  switch (options->mode) {
    case Mode::kPlacement: return run_placement(*options);
    case Mode::kControlPlane: return cluster_sim::run_control_plane(options->control);
  }
  return 2;
}
