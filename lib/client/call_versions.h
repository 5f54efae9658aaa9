// Replica versions of the calling thread's current data call (docs/cluster.md "Replicas"):
// the router sets the version a GET needs (read your writes at a replica) before calling a
// NodeSession, and reads back the version the write's reply carried. A thread-local rather than
// a parameter of every NodeSession call: a data call runs on its caller's thread from request
// to reply, and sessions stay unaware of replicas. Thread-compatible by construction.
#pragma once

#include <cstdint>

namespace kvrdma::client {

struct CallVersions {
  uint64_t min_version = 0;  // GetRequest.min_version of the next GET
  uint64_t acked = 0;        // version of the last write acknowledged on this thread (0: none)
};

inline CallVersions& call_versions() {
  thread_local CallVersions v;
  return v;
}

}  // namespace kvrdma::client
