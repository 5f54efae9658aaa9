// Receive buffers posted on a rail's endpoint for incoming messages (the request channel's
// requests). Where the provider offers FI_MULTI_RECV (tcp;ofi_rxm, shm) a few large buffers each
// take many messages and come back when less than one message's room is left; elsewhere a ring of
// one-message buffers, each reposted once its message was handled.
//
// Thread safety: post calls take the rail's mu; owns() and received()/released() are called by
// the one progress thread. The buffers outlive the ring inside Rail::retired, since the endpoint
// may still hold them until it closes.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "kvrdma/status.h"
#include "transport/fabric/fabric_rail.h"

namespace kvrdma::transport::fabric {

class ReceiveRing {
 public:
  // Registers and posts buffers for messages of up to `max_bytes` on `rail`'s endpoint.
  static Result<std::unique_ptr<ReceiveRing>> create(std::shared_ptr<Rail> rail, size_t max_bytes);
  ~ReceiveRing();
  ReceiveRing(const ReceiveRing&) = delete;
  ReceiveRing& operator=(const ReceiveRing&) = delete;

  // True when a CQ entry's op_context is one of our buffers.
  bool owns(const void* context) const;
  // The buffer behind `context` is back from the provider (its single message handled, or a
  // multi-receive buffer released): posts it again. A failure is logged and the buffer stays out
  // (the others keep receiving).
  void repost(void* context);
  // Whether a completion with these flags gives its buffer back (and the caller must repost it
  // after handling the message).
  bool returns_buffer(uint64_t flags) const { return !multi_ || (flags & FI_MULTI_RECV) != 0; }
  size_t max_bytes() const { return max_bytes_; }
  // Posts again the buffers the provider refused earlier (-FI_EAGAIN); the progress thread calls
  // it each round.
  void retry();

 private:
  struct Storage;
  ReceiveRing(std::shared_ptr<Rail> rail, size_t max_bytes, bool multi);
  Status post(size_t index);

  std::shared_ptr<Rail> rail_;
  size_t max_bytes_;
  bool multi_;
  std::shared_ptr<Storage> storage_;  // memory and contexts; retired on destruction
  fid_mr* mr_ = nullptr;
  void* desc_ = nullptr;  // fi_mr_desc where FI_MR_LOCAL, else null
};

}  // namespace kvrdma::transport::fabric
