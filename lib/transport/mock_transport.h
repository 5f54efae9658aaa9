// MockTransport: a Transport that moves bytes with memcpy through POSIX shared memory, so a
// server and its clients in different processes on one host behave as over RDMA: registered
// regions, descriptors, bounds checks, completions and errors are the same; only the copy differs.
//
// A region is a shared-memory object "/kvrdma-<pid>-<16 hex digits>" (mode 0600) mapped by its
// owner; the descriptor carries its name and length. attach() maps only names of exactly that
// pattern — never a path or any other object a peer names. seal() unlinks the object once the
// peer has mapped it, so a killed process leaves nothing behind in /dev/shm.
//
// write() completes inline: `done` runs before write() returns. Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "transport/transport.h"

namespace kvrdma::transport {

std::unique_ptr<Transport> make_mock_transport();

// Unlinks /dev/shm/kvrdma-<pid>-* objects whose process no longer exists (left by a killed
// process); returns how many. Servers call it at start.
size_t remove_stale_shm_objects();

}  // namespace kvrdma::transport
