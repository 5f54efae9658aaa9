// The subcommands of kv-client, each a function over one connected Client. Shared by the
// one-shot commands (kv_client.cc), the repl and the bench. Output goes to stdout, errors to
// stderr as one line, and each returns the program's exit code (see cli_common.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvrdma/client.h"
#include "kvrdma/cluster.h"
#include "kvrdma/stats.h"

namespace kvrdma::tools {

// `prefix` starts every error line, e.g. "kv-client get".
int command_get(Client& client, std::string_view key, const std::string& output_path,
                std::string_view prefix);
// `file_path` non-empty: the value is that file's bytes ("-": stdin); else `value`.
int command_put(Client& client, std::string_view key, std::string_view value,
                const std::string& file_path, uint64_t ttl_ms, std::string_view prefix);
int command_delete(Client& client, std::string_view key, std::string_view prefix);
int command_stats(Client& client, bool json, std::string_view prefix);
// Where KEY's value lives (its owner, region, offset, length).
int command_locate(Client& client, std::string_view key, bool json, std::string_view prefix);
// The cluster map and each node's counters (one node, epoch 0, outside cluster mode).
int command_cluster(Client& client, bool json, std::string_view prefix);

// Every ServerStats field, one per line / as one JSON object.
std::string stats_table(const ServerStats& stats);
std::string stats_json(const ServerStats& stats);
std::string location_table(const ValueLocation& location);
std::string location_json(const ValueLocation& location);
std::string cluster_table(const ClusterInfo& info);
std::string cluster_json(const ClusterInfo& info);

// Reads commands from stdin until EOF or quit. Prompt and history only when stdin is a terminal.
int run_repl(Client& client);

struct BenchConfig {
  uint64_t ops = 10000;
  uint64_t value_size = 4096;
  unsigned concurrency = 1;
  std::string op = "get";  // get | put | mixed (90% get, 10% put)
  uint64_t keys = 0;       // 0: min(ops, 1000), fewer when the server pool holds fewer
  double duration_s = 60;  // stop after this, even before `ops`
  bool json = false;
  unsigned batch = 1;     // >1: each call is a get_many / put_many of this many keys
  unsigned pipeline = 1;  // >1: requests in flight per thread (get_async / put_async)
};
int run_bench(Client& client, const BenchConfig& config);

// "SECONDS" (fractional allowed) to milliseconds; a positive value never rounds down to 0.
bool parse_ttl_seconds(std::string_view text, uint64_t& ttl_ms);

}  // namespace kvrdma::tools
