// The client's registered receive buffer, shared by Client::Impl, the batch calls and every live
// ValueView (so a view may outlive its Client).
#pragma once

#include <memory>

#include "memory/memory_pool.h"
#include "transport/transport.h"

namespace kvrdma::client {

// Members are destroyed in reverse order: pool, region, transport.
struct ReceiveBuffer {
  std::shared_ptr<transport::Transport> transport;
  std::unique_ptr<transport::LocalRegion> region;
  std::unique_ptr<memory::MemoryPool> pool;
};

// What a view in the receive buffer holds: the extent, given back when the view goes.
struct HeldExtent {
  std::shared_ptr<ReceiveBuffer> buffer;  // declared first: outlives `extent`
  memory::Allocation extent;
};

}  // namespace kvrdma::client
