// The plain API's large PUT: the value's bytes are not in registered memory, so they are staged
// through the receive buffer. Chunks are pipelined: while the transport writes one chunk, the
// next is copied in, so a large PUT costs about one copy plus one write, not their sum.
#pragma once

#include <chrono>
#include <memory>
#include <string_view>

#include "client/receive_buffer.h"
#include "kvrdma/status.h"
#include "transport/transport.h"

namespace kvrdma::client {

// Writes `value` to dst[dst_offset, +value.size()) through `buffer`, up to kStagedInFlight
// chunks in flight at once; returns when every write has completed (OK) or after the first
// failure once the writes already issued have completed. Blocks; any thread.
inline constexpr int kStagedInFlight = 4;
Status staged_write(transport::Transport& transport, ReceiveBuffer& buffer, std::string_view value,
                    std::shared_ptr<transport::RemoteRegion> dst, uint64_t dst_offset,
                    std::chrono::steady_clock::time_point deadline);

}  // namespace kvrdma::client
