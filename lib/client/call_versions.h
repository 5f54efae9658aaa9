// Replica versions of the calling thread's current data call (docs/cluster.md "Replicas"):
// the router sets the version a GET needs (read your writes at a replica) before calling a
// NodeSession, and reads back the version the write's reply carried. A thread-local rather than
// a parameter of every NodeSession call: a data call runs on its caller's thread from request
// to reply, and sessions stay unaware of replicas. Thread-compatible by construction.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/slot_map.h"

namespace kvrdma::client {

struct CallVersions {
  uint64_t min_version = 0;  // GetRequest.min_version of the next GET
  uint64_t acked = 0;        // version of the last write acknowledged on this thread (0: none)
  // The call's slot is replicated (the map keeps replicas): its PUT / DELETE go over gRPC, not
  // the request channel, which does not replicate writes.
  bool replicated = false;
  // A batch (get_many): the client's acknowledged version per slot (kSlots entries), from which
  // each GetManyItem.min_version is taken; null: 0 for every key.
  const std::atomic<uint64_t>* slot_versions = nullptr;
  // A batch (put_many): (slot, version) of each item acknowledged with a version on this thread
  // since the router last took them.
  std::vector<std::pair<uint32_t, uint64_t>> acked_slots;

  uint64_t min_version_of(std::string_view key) const {
    return slot_versions == nullptr ? 0 : slot_versions[cluster::slot_of(key)].load();
  }
};

inline CallVersions& call_versions() {
  thread_local CallVersions v;
  return v;
}

}  // namespace kvrdma::client
