// MockTransport: a Transport that moves bytes with memcpy through POSIX shared memory, so a
// server and its clients in different processes on one host behave as over RDMA: registered
// regions, descriptors, bounds checks, completions and errors are the same; only the copy differs.
//
// - address(): "kvrdma-mock:<pid>". connect() accepts only that form (INVALID_ARGUMENT otherwise,
//   e.g. a libfabric address: both ends must run --mock true).
// - allocate(): a shared-memory object "/kvrdma-<pid>-<16 hex digits>" (mode 0600, pages
//   reserved up front) mapped by its owner. descriptor() = "kvrdma-mock-v1 <name> <length>".
// - seal() unlinks the object (idempotent); peers that attached keep their mapping, so once the
//   peer has attached a killed process leaves nothing behind in /dev/shm. Destroying the region
//   unmaps it and unlinks it if not sealed yet.
// - Peer::attach() parses the descriptor strictly and maps only names of exactly the pattern
//   above, never a path or any other object a peer names (PERMISSION_DENIED).
// - write() checks both ranges (overflow-safe) and copies. It completes INLINE: `done` runs on
//   the calling thread before write() returns, so a caller must not hold a lock `done` takes.
//   A memcpy cannot outlive its deadline, so the deadline is never reached.
//
// Thread-safe: every call may come from any thread; regions are immutable after allocate().
#pragma once

#include <cstddef>
#include <memory>

#include "transport/transport.h"

namespace kvrdma::transport {

std::unique_ptr<Transport> make_mock_transport();

// Unlinks /dev/shm/kvrdma-<pid>-* objects whose process no longer exists (left by a killed
// process); returns how many. Objects of live processes, and of this one, are kept. Servers call
// it at start.
size_t remove_stale_shm_objects();

}  // namespace kvrdma::transport
