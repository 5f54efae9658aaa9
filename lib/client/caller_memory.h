// Caller memory on the client (README.md "Caller memory"): what a MemoryHandle holds, and the
// items the node sessions work on. A region is announced to each node lazily, by the first call
// that names it there (RegisterRegion), again after that node's session was re-opened, and
// released on every node it was announced to when the last user (the handle, or a call in
// flight) lets it go.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>

#include "kvrdma/client.h"
#include "transport/transport.h"

namespace kvrdma::client {

class NodeSession;

// Where a region stands with one node session: the session id it was announced to and the id
// the server gave it.
struct RegionRegistration {
  std::weak_ptr<NodeSession> session;
  uint64_t session_id = 0;
  uint64_t region_id = 0;
};

// A span of caller memory to GET into.
struct MemGet {
  std::string_view key;
  std::shared_ptr<MemoryHandle::State> mem;
  size_t offset = 0;
  size_t capacity = 0;
  uint64_t* value_len = nullptr;  // set once the value's length is known, when given
};

// A span of caller memory to PUT from.
struct MemPut {
  std::string_view key;
  std::shared_ptr<MemoryHandle::State> mem;
  size_t offset = 0;
  size_t len = 0;
};

}  // namespace kvrdma::client

namespace kvrdma {

// Thread-safe: `mu` guards `registrations`; the rest is immutable after creation. Members are
// destroyed in reverse order: the region (deregistered) before the transport.
struct MemoryHandle::State {
  const void* owner = nullptr;  // the Client::Impl that made it: a handle works only there
  std::shared_ptr<transport::Transport> transport;
  std::unique_ptr<transport::LocalRegion> region;
  size_t size = 0;  // bytes the caller asked for (the region may be rounded up to pages)

  std::mutex mu;
  std::map<const client::NodeSession*, client::RegionRegistration> registrations;  // mu

  // Tells every node session still alive that the region is gone (best effort, 1 s each).
  ~State();
};

}  // namespace kvrdma
