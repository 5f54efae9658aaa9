// The client's registered receive buffer, shared by Client::Impl, the batch calls and every live
// ValueView (so a view may outlive its Client).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "kvrdma/status.h"
#include "memory/memory_pool.h"
#include "transport/transport.h"

namespace kvrdma::client {

// True when a GET that offered receive space failed in a way that may leave the server's write
// into that space still under way: no answer in time (DEADLINE_EXCEEDED: the client gave up, or
// the server's transport write was not complete at its deadline, which leaves its posted pieces
// in flight), the server or the connection gone (UNAVAILABLE), or an internal failure. The
// server's refusals (NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, FAILED_PRECONDITION,
// PERMISSION_DENIED) come before any write.
inline bool write_may_still_land(const Status& s) {
  return s.code() == Code::kDeadlineExceeded || s.code() == Code::kUnavailable ||
         s.code() == Code::kInternal;
}

// Members are destroyed in reverse order: retired extents, pool, region, transport.
struct ReceiveBuffer {
  std::shared_ptr<transport::Transport> transport;
  std::unique_ptr<transport::LocalRegion> region;
  std::unique_ptr<memory::MemoryPool> pool;

  // Takes an extent that a failed GET had offered (write_may_still_land): the server's write
  // may land in it later, so it is never handed out again while this buffer lives; otherwise a
  // late write would overwrite the value of the next GET given the same bytes. Returns the
  // bytes retired so far.
  uint64_t retire(memory::Allocation extent) {
    std::lock_guard lock(retired_mu_);
    const uint64_t total = retired_bytes_.load(std::memory_order_relaxed) + extent.capacity();
    retired_bytes_.store(total, std::memory_order_relaxed);
    retired_.push_back(std::move(extent));
    return total;
  }
  // Lock-free: read after every GET.
  uint64_t retired_bytes() const { return retired_bytes_.load(std::memory_order_relaxed); }

 private:
  std::mutex retired_mu_;
  std::vector<memory::Allocation> retired_;  // guarded by retired_mu_
  std::atomic<uint64_t> retired_bytes_{0};   // written under retired_mu_
};

// What a view in the receive buffer holds: the extent, given back when the view goes.
struct HeldExtent {
  std::shared_ptr<ReceiveBuffer> buffer;  // declared first: outlives `extent`
  memory::Allocation extent;
};

}  // namespace kvrdma::client
