// Counters a server reports (kv-client stats, Client::stats, Server::stats).
#pragma once

#include <cstdint>
#include <string>

namespace kvrdma {

struct ServerStats {
  uint32_t node_id = 0;
  std::string transport;             // e.g. "mock" or "fabric/tcp;ofi_rxm"
  uint64_t keys = 0;
  uint64_t sessions = 0;
  uint64_t reservations = 0;         // PUT reservations not yet committed
  uint64_t pinned = 0;               // entries held by in-flight writes
  uint64_t pool_bytes = 0;
  uint64_t pool_used_bytes = 0;
  uint64_t pool_free_bytes = 0;
  uint64_t pool_largest_free_bytes = 0;
  uint64_t value_bytes = 0;          // sum of stored value lengths
  uint64_t gets = 0;
  uint64_t get_hits = 0;
  uint64_t get_misses = 0;
  uint64_t puts = 0;
  uint64_t deletes = 0;
  uint64_t evictions = 0;
  uint64_t expirations = 0;
  uint64_t bytes_inline_sent = 0;        // GET bytes returned inside replies
  uint64_t bytes_transport_written = 0;  // GET bytes pushed by the transport
  uint64_t bytes_inline_received = 0;    // PUT bytes carried inside requests
  uint64_t bytes_put_committed = 0;      // PUT bytes committed after a transport write
  uint64_t reservations_expired = 0;
  uint64_t sessions_expired = 0;
  // Moves when keys, sessions, reservations, pins or the pool change (not for read counters);
  // Client::stats_after waits for it to pass a value.
  uint64_t version = 0;
  // Cluster mode (docs/cluster.md); empty / 0 outside it.
  std::string cluster;
  uint64_t map_epoch = 0;            // the slot map this node serves by
  uint64_t slots = 0;                // slots this node owns
  uint64_t keys_moved_out = 0;       // values handed to other nodes when slots moved
  uint64_t keys_moved_in = 0;        // values received from other nodes
};

}  // namespace kvrdma
