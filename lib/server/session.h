// Client sessions: what Hello registered (the client's transport peer and receive region) and the
// PUT reservations the session holds. In cluster mode a node moving values into this one opens a
// session too (a peer session, Session::peer_node). Thread-safe; SessionTable's mutex guards the
// map, each Session's mutex guards its reservations (lock order: table, then session).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kvrdma/status.h"
#include "memory/memory_pool.h"
#include "transport/transport.h"

namespace kvrdma::server {

using SteadyTime = std::chrono::steady_clock::time_point;

struct Reservation {
  std::string key;
  memory::Allocation allocation;
  uint64_t length = 0;
  std::chrono::milliseconds ttl{0};
  SteadyTime expires;
  SteadyTime begun;                      // PutBegin: the two-phase PUT histogram times from here
  transport::WriteExpectation incoming;  // the client writes the value into our pool until commit
  uint32_t slot = 0;                     // cluster mode: the key's slot, checked again at commit
  uint64_t replica_version = 0;  // replicas: a write a primary pushes here (0: a client's PUT)
};

struct Session {
  uint64_t id = 0;
  uint64_t client_id = 0;
  // Cluster mode: the node id + 1 of a node that opened this session to move values in (0: a
  // client). Set before the session is published; read-only after.
  uint32_t peer_node = 0;
  std::shared_ptr<transport::Peer> peer;
  std::shared_ptr<transport::RemoteRegion> region;  // every GET write must land inside it
  std::atomic<int64_t> last_seen_ns{0};
  std::atomic<uint64_t> transfers{0};  // GETs whose transport write is in flight

  std::mutex mu;
  std::unordered_map<uint64_t, Reservation> reservations;  // guarded by mu
  uint64_t next_reservation = 1;                           // guarded by mu
  // Caller memory: regions RegisterRegion announced, by id (never 0: 0 names `region`).
  std::unordered_map<uint64_t, std::shared_ptr<transport::RemoteRegion>> extra_regions;  // mu
  uint64_t next_region = 1;                                                              // mu

  // The region a GET names: `region` for 0, else a registered one; INVALID_ARGUMENT for an id
  // this session does not know (released, or never registered).
  Result<std::shared_ptr<transport::RemoteRegion>> dest_region(uint64_t id);
};

class SessionTable {
 public:
  explicit SessionTable(std::chrono::milliseconds lease) : lease_(lease) {}

  // Adds a session with a fresh unguessable id; RESOURCE_EXHAUSTED when `max_sessions` are open.
  // `peer_node`: see Session::peer_node.
  Result<std::shared_ptr<Session>> add(uint64_t client_id, std::shared_ptr<transport::Peer> peer,
                                       std::shared_ptr<transport::RemoteRegion> region,
                                       size_t max_sessions, uint32_t peer_node = 0);
  // The session, its lease renewed; FAILED_PRECONDITION when unknown or expired.
  Result<std::shared_ptr<Session>> find(uint64_t id);
  // Removes the session; false when unknown.
  bool remove(uint64_t id);
  // Removes sessions whose lease ran out; returns how many.
  size_t expire(SteadyTime now);
  // Frees reservations past their expiry in every session; returns how many.
  size_t expire_reservations(SteadyTime now);

  size_t size() const;
  size_t reservations() const;
  std::chrono::milliseconds lease() const { return lease_; }

 private:
  std::chrono::milliseconds lease_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Session>> sessions_;  // guarded by mu_
};

}  // namespace kvrdma::server
