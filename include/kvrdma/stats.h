// Counters a server reports (kv-client stats, Client::stats, Server::stats). One table,
// KVRDMA_SERVER_STATS, names every figure once: the ServerStats members, stats_fields() (which
// the kv-client table and --json, the C ABI's "name=value" text and the StatsReply conversion
// walk) all come from it. Adding a figure is one line here plus its field in StatsReply
// (proto/kv_cache.proto, same name); the build fails without the proto field and
// stats_fields_test fails when the two disagree in either direction.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "kvrdma/export.h"

// X(type, name, role, unit, description) for each figure, in the order every output lists them.
// role: Identity (which server this is), Gauge (a level that goes up and down), Counter (only
// grows while the server runs), Version (the state version Client::stats_after waits on).
// unit: None, Count or Bytes.
#define KVRDMA_SERVER_STATS(X)                                                                  \
  X(uint32_t, node_id, Identity, None, "this server's node id (--node-id)")                     \
  X(std::string, transport, Identity, None,                                                     \
    "the transport it runs, e.g. \"mock\" or "                                                  \
    "\"fabric/tcp;ofi_rxm\"")                                                                   \
  X(uint64_t, keys, Gauge, Count, "keys stored")                                                \
  X(uint64_t, sessions, Gauge, Count, "client sessions open")                                   \
  X(uint64_t, reservations, Gauge, Count, "PUT reservations not yet committed")                 \
  X(uint64_t, pinned, Gauge, Count, "entries held by in-flight writes")                         \
  X(uint64_t, pool_bytes, Gauge, Bytes, "size of the memory pool")                              \
  X(uint64_t, pool_used_bytes, Gauge, Bytes, "pool bytes allocated")                            \
  X(uint64_t, pool_free_bytes, Gauge, Bytes, "pool bytes free")                                 \
  X(uint64_t, pool_largest_free_bytes, Gauge, Bytes, "the largest free extent of the pool")     \
  X(uint64_t, value_bytes, Gauge, Bytes, "sum of stored value lengths")                         \
  X(uint64_t, gets, Counter, Count, "GETs served")                                              \
  X(uint64_t, get_hits, Counter, Count, "GETs that found their key")                            \
  X(uint64_t, get_misses, Counter, Count, "GETs that did not")                                  \
  X(uint64_t, puts, Counter, Count, "PUTs stored")                                              \
  X(uint64_t, deletes, Counter, Count, "DELETEs served")                                        \
  X(uint64_t, evictions, Counter, Count, "entries evicted to make room")                        \
  X(uint64_t, expirations, Counter, Count, "entries dropped when their TTL ran out")            \
  X(uint64_t, bytes_inline_sent, Counter, Bytes, "GET value bytes returned inside replies")     \
  X(uint64_t, bytes_transport_written, Counter, Bytes,                                          \
    "GET value bytes pushed by the "                                                            \
    "transport")                                                                                \
  X(uint64_t, bytes_inline_received, Counter, Bytes, "PUT value bytes carried inside requests") \
  X(uint64_t, bytes_put_committed, Counter, Bytes,                                              \
    "PUT value bytes committed after a "                                                        \
    "transport write")                                                                          \
  X(uint64_t, reservations_expired, Counter, Count, "PUT reservations freed uncommitted")       \
  X(uint64_t, sessions_expired, Counter, Count, "client sessions ended by their lease")         \
  X(uint64_t, version, Version, None,                                                           \
    "moves when keys, sessions, reservations, pins or the "                                     \
    "pool change (not for read counters); Client::stats_after waits for it to pass a value")    \
  X(std::string, cluster, Identity, None, "cluster name; empty outside cluster mode")           \
  X(uint64_t, map_epoch, Gauge, None,                                                           \
    "the slot map this node serves by (0 outside cluster "                                      \
    "mode)")                                                                                    \
  X(uint64_t, slots, Gauge, Count, "slots this node owns")                                      \
  X(uint64_t, keys_moved_out, Counter, Count, "values handed to other nodes when slots moved")  \
  X(uint64_t, keys_moved_in, Counter, Count, "values received from other nodes")

namespace kvrdma {

// What a server reports; each member is described in KVRDMA_SERVER_STATS. Cluster figures are
// empty / 0 outside cluster mode (docs/cluster.md).
struct ServerStats {
#define KVRDMA_STATS_MEMBER(type, name, role, unit, description) type name{};
  KVRDMA_SERVER_STATS(KVRDMA_STATS_MEMBER)
#undef KVRDMA_STATS_MEMBER
};

// The role and unit columns of KVRDMA_SERVER_STATS.
enum class StatRole { kIdentity, kGauge, kCounter, kVersion };
enum class StatUnit { kNone, kCount, kBytes };

// One row of KVRDMA_SERVER_STATS. Exactly one of `number` and `text` is set: `number` reads an
// integer member (widened to 64 bits), `text` a string member.
struct StatInfo {
  const char* name;  // the member's name; also its StatsReply field, C text line and JSON key
  StatRole role;
  StatUnit unit;
  const char* description;  // one line, for help texts and metric descriptions
  uint64_t (*number)(const ServerStats& stats);
  const std::string& (*text)(const ServerStats& stats);
};

// Every figure, in KVRDMA_SERVER_STATS order. The span lives as long as the program.
KVRDMA_EXPORT std::span<const StatInfo> stats_fields();

}  // namespace kvrdma
