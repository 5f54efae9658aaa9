// MetaStore: the coordination store a cluster keeps its membership, controller and slot map in.
// The etcd implementation is the real one; the in-memory one has the same contract for unit
// tests (many agents in one process share one instance). Only small records go here, never
// per-key data. Thread-safe: every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvrdma/status.h"

namespace kvrdma::cluster {

using LeaseId = int64_t;

struct MetaEntry {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  LeaseId lease = 0;
};

struct MetaRange {
  std::vector<MetaEntry> entries;  // sorted by key
  int64_t revision = 0;            // the store's revision the range was read at
};

class MetaStore {
 public:
  virtual ~MetaStore() = default;

  // A lease that ends `ttl` after its last keep_alive (etcd rounds up to whole seconds).
  virtual Result<LeaseId> grant_lease(std::chrono::milliseconds ttl) = 0;
  // Refreshes the lease once. NOT_FOUND when it is gone (expired or revoked): the holder must
  // stop acting on what it guarded. UNAVAILABLE when the store cannot be reached.
  virtual Status keep_alive(LeaseId lease) = 0;
  // Ends the lease now; its keys vanish. Idempotent.
  virtual Status revoke(LeaseId lease) = 0;

  // Creates key = value, attached to `lease` (0: none), only if the key is absent. false when it
  // exists; then *existing (when given) receives it.
  virtual Result<bool> create(std::string_view key, std::string_view value, LeaseId lease,
                              MetaEntry* existing = nullptr) = 0;
  // Sets key = value only when its mod_revision equals `expected_mod_revision` (0: the key must
  // be absent); false when it changed in between.
  virtual Result<bool> compare_and_swap(std::string_view key, int64_t expected_mod_revision,
                                        std::string_view value, LeaseId lease) = 0;
  // Unconditional set / delete.
  virtual Status put(std::string_view key, std::string_view value, LeaseId lease) = 0;
  virtual Status erase(std::string_view key) = 0;

  // Every key that starts with `prefix`, sorted, and the revision it was read at.
  virtual Result<MetaRange> range(std::string_view prefix) = 0;
  // Blocks until a key under `prefix` changes at a revision above `after_revision`, `timeout`
  // passes, or cancel_waits() runs. Returns the newest revision it saw changed (> after_revision)
  // or after_revision itself when nothing changed. UNAVAILABLE when the store is unreachable
  // (returned within `timeout`, not at once in a loop: callers may just call again).
  virtual Result<int64_t> wait_for_change(std::string_view prefix, int64_t after_revision,
                                          std::chrono::milliseconds timeout) = 0;
  // Makes every current and future wait_for_change return at once; for shutdown.
  virtual void cancel_waits() = 0;

  // Requests sent to the store so far (the control-plane bench reports the rate).
  virtual uint64_t requests() const = 0;
  // For messages: "etcd http://127.0.0.1:2379" or "in-memory".
  virtual std::string describe() const = 0;
};

// The etcd v3 implementation over gRPC. `endpoints`: "http://host:port" (or host:port), tried
// in order. UNAVAILABLE naming the endpoints and the --etcd-endpoints setting when none answers
// within `timeout`; every later call is bounded by `timeout` too.
Result<std::unique_ptr<MetaStore>> connect_etcd(const std::vector<std::string>& endpoints,
                                                std::chrono::milliseconds timeout);

// In-memory, for unit tests: shared by every agent of a test through the shared_ptr. Leases run
// on the steady clock; the test hooks below stand in for etcd's failures.
class MemoryMetaStore : public MetaStore {
 public:
  static std::shared_ptr<MemoryMetaStore> create();
  // The factory above would hide the create-if-absent overload otherwise.
  using MetaStore::create;
  // Ends a lease as if its keepalives had stopped reaching etcd for its TTL.
  virtual void expire_lease(LeaseId lease) = 0;
  // While true every call fails with UNAVAILABLE (etcd down).
  virtual void set_unreachable(bool unreachable) = 0;
};

}  // namespace kvrdma::cluster
