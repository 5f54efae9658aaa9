// FabricTransport's Messages: sends (fi_inject / fi_sendmsg), writes with remote CQ data
// (fi_inject_writedata / fi_writemsg), posted receive buffers (ReceiveRing), and delivery of what
// the completion queues hold to the message and data handlers, on the progress thread or on a
// caller's thread in progress().
#include <fmt/format.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "transport/fabric/fabric_transport_impl.h"

namespace kvrdma::transport::fabric {

Status FabricTransport::listen(size_t max_bytes, MessageHandler on_message) {
  std::lock_guard lock(handlers_mu_);
  if (listening_.load()) {
    return Status(Code::kFailedPrecondition, "this transport already receives messages");
  }
  auto ring = fabric::ReceiveRing::create(rails_[0], max_bytes);
  if (!ring) return ring.status();
  on_message_ = std::move(on_message);
  {
    std::lock_guard ops(ops_mu_);  // the progress thread reads ring_ under ops_mu_
    ring_ = std::move(*ring);
  }
  listening_ = true;
  wake();
  return Status();
}

void FabricTransport::on_remote_data(DataHandler on_data) {
  std::lock_guard lock(handlers_mu_);
  on_data_ = std::move(on_data);
}

void FabricTransport::send(Peer& peer, const LocalRegion& src, size_t offset, size_t len,
                           Clock::time_point deadline, Completion done) {
  auto* fpeer = dynamic_cast<FabricPeer*>(&peer);
  auto* local = dynamic_cast<const FabricLocalRegion*>(&src);
  if (fpeer == nullptr || local == nullptr) {
    done(Status(Code::kInvalidArgument, "peer or region does not belong to this transport"));
    return;
  }
  if (offset > src.size() || len > src.size() - offset || len == 0 ||
      len > rails_[0]->info->ep_attr->max_msg_size) {
    done(Status(Code::kInvalidArgument,
                fmt::format("message [{}, +{}) is empty, outside the {}-byte region or longer "
                            "than the provider's {} bytes",
                            offset, len, src.size(), rails_[0]->info->ep_attr->max_msg_size)));
    return;
  }
  const auto& peer_addresses = fpeer->addresses();
  if (!peer_addresses->alive(0)) {
    done(Status(Code::kUnavailable, "the peer process has exited"));
    return;
  }
  fi_addr_t addr = peer_addresses->addr[0][0];
  const std::byte* bytes = local->data() + offset;
  if (len <= rails_[0]->inject_size()) {
    ssize_t rc;
    {
      std::lock_guard lock(rails_[0]->mu);
      rc = fi_inject(rails_[0]->ep, bytes, len, addr);
    }
    if (rc != -FI_EAGAIN) {
      kick_after_inject();
      done(rc == 0 ? Status() : fabric::fi_error("fi_inject", static_cast<int>(rc)));
      return;
    }
  }
  auto op = std::make_shared<Operation>();
  op->done = std::move(done);
  op->deadline = deadline;
  op->pending = 1;
  auto piece = std::make_unique<Piece>();
  piece->op = op;
  piece->kind = Kind::kSend;
  piece->peer = peer_addresses;
  piece->iov = iovec{const_cast<std::byte*>(bytes), len};
  piece->desc = local->desc(0);
  piece->addr = addr;
  std::vector<std::shared_ptr<Operation>> finished;
  {
    std::lock_guard lock(ops_mu_);
    ++unfinished_;
    if (!backlog_.empty() || !post(piece, finished)) backlog_.push_back(std::move(piece));
  }
  wake();
  deliver(finished);
}

size_t FabricTransport::progress() {
  std::unique_lock poll(poll_mu_, std::try_to_lock);
  if (!poll.owns_lock()) return 0;  // the progress thread (or another caller) is at it
  std::vector<std::shared_ptr<Operation>> finished;
  int got = 0;
  {
    std::lock_guard lock(ops_mu_);
    for (size_t r = 0; r < rails_.size(); ++r) got += read_cq(r, finished);
    if (!backlog_.empty()) post_backlog(finished);
  }
  deliver_incoming();
  poll.unlock();
  deliver(finished);
  if (got > 0) last_work_ns_.store(Clock::now().time_since_epoch().count());
  return static_cast<size_t>(got);
}

bool FabricTransport::inject_write_data(const FabricLocalRegion& local, size_t src_offset,
                                        const FabricRemoteRegion& remote, size_t dst_offset,
                                        size_t len, uint64_t data, Completion& done) {
  if (!remote.peer_alive(0)) {
    done(Status(Code::kUnavailable, "the peer process has exited"));
    return true;
  }
  ssize_t rc;
  {
    std::lock_guard lock(rails_[0]->mu);
    rc = fi_inject_writedata(rails_[0]->ep, local.data() + src_offset, len, data, remote.addr(0, 0),
                             remote.remote_address(dst_offset), remote.key(0));
  }
  if (rc == -FI_EAGAIN) return false;
  kick_after_inject();
  done(rc == 0 ? Status() : fabric::fi_error("fi_inject_writedata", static_cast<int>(rc)));
  return true;
}

void FabricTransport::kick_after_inject() {
  if (rails_[0]->is_shm()) return;  // shm copies it into the peer's queue at once
  // Drive the endpoint here, which hands what tcp;ofi_rxm queued to the socket, rather than wake
  // the progress thread (an eventfd write and a context switch per message: over tcp that
  // doubled a small request's round trip on 2 vCPUs). When another thread polls now, it may be
  // about to sleep: wake it as before.
  std::unique_lock poll(poll_mu_, std::try_to_lock);
  if (!poll.owns_lock()) {
    wake();
    return;
  }
  std::vector<std::shared_ptr<Operation>> finished;
  int got = 0;
  {
    std::lock_guard lock(ops_mu_);
    for (size_t r = 0; r < rails_.size(); ++r) got += read_cq(r, finished);
  }
  deliver_incoming();
  poll.unlock();
  deliver(finished);
  if (got > 0) last_work_ns_.store(Clock::now().time_since_epoch().count());
}

void FabricTransport::deliver_incoming() {
  if (received_.empty() && data_.empty()) return;
  MessageHandler on_message;
  DataHandler on_data;
  {
    std::lock_guard lock(handlers_mu_);
    if (!received_.empty()) on_message = on_message_;
    if (!data_.empty()) on_data = on_data_;
  }
  for (uint64_t d : data_) {
    if (on_data) on_data(d);
  }
  data_.clear();
  for (const Received& m : received_) {
    // A multi-receive buffer's last entry may carry no message, only the buffer's return.
    if (m.len > 0 && m.len <= ring_->max_bytes() && on_message) on_message({m.bytes, m.len});
    if (m.give_back) ring_->repost(m.context);
  }
  received_.clear();
}

}  // namespace kvrdma::transport::fabric
