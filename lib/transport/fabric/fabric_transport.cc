// FabricTransport: Transport over libfabric RDM endpoints with RMA writes, and Messages (sends,
// posted receives, writes with remote CQ data) on rail 0's endpoint for the request channel.
//
// One rail (fabric/domain/endpoint/AV/CQ) per --num-domains, shared by every peer (too many
// endpoints per process fail with -FI_ENOMEM). A write is cut into pieces of at most kMaxPiece
// (and the provider's max_msg_size), dealt round-robin over our rails and the peer's, and all
// posted at once. Writes use FI_DELIVERY_COMPLETE, so a completion means the bytes are visible at
// the target, not merely sent.
//
// Both providers that run here (tcp;ofi_rxm, shm) use manual progress, so one progress thread
// reads every rail's CQ: it completes our writes and, just as important, lets writes that
// *target* our memory make progress (see Transport::expect_writes for when it polls eagerly).
//
// write() never blocks: a piece the provider refuses with -FI_EAGAIN waits in a backlog that the
// progress thread posts as the queue drains; pieces still waiting or unfinished at their deadline
// complete the write with DEADLINE_EXCEEDED (so a dead peer cannot hold a caller, e.g. a gRPC
// handler, nor a pin, past the request's deadline).
//
// Locking: each rail's `mu` serialises calls on that rail's endpoint and CQ; `ops_mu_` guards
// the operation tables below. Order: ops_mu_, then a rail's mu. Completions are delivered with no
// lock held.
#include "transport/fabric/fabric_transport.h"

#include <fmt/format.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "memory/memory_pool.h"
#include "transport/fabric/fabric_api.h"
#include "transport/fabric/fabric_transport_impl.h"

namespace kvrdma::transport {
namespace fabric {

void FabricTransport::write_impl(Kind kind, uint64_t data, const LocalRegion& src,
                                 size_t src_offset, std::shared_ptr<RemoteRegion> dst,
                                 size_t dst_offset, size_t len, Clock::time_point deadline,
                                 Completion done) {
  auto* local = dynamic_cast<const FabricLocalRegion*>(&src);
  auto* remote = dynamic_cast<const FabricRemoteRegion*>(dst.get());
  if (local == nullptr || remote == nullptr) {
    done(Status(Code::kInvalidArgument, "regions do not belong to the libfabric transport"));
    return;
  }
  if (src_offset > src.size() || len > src.size() - src_offset) {
    done(Status(Code::kInvalidArgument,
                fmt::format("source range [{}, +{}) is outside the {}-byte local region",
                            src_offset, len, src.size())));
    return;
  }
  if (dst_offset > remote->size() || len > remote->size() - dst_offset) {
    done(Status(Code::kInvalidArgument,
                fmt::format("destination range [{}, +{}) is outside the {}-byte remote region",
                            dst_offset, len, remote->size())));
    return;
  }
  uint64_t piece_max = std::min<uint64_t>(kMaxPiece, rails_[0]->info->ep_attr->max_msg_size);
  if (kind == Kind::kWriteData && (len == 0 || len > piece_max)) {
    done(Status(Code::kInvalidArgument,
                fmt::format("a write with data takes 1..{} bytes, not {}", piece_max, len)));
    return;
  }
  if (len == 0) {
    done(Status());
    return;
  }
  if (kind == Kind::kWriteData && len <= rails_[0]->inject_size() &&
      inject_write_data(*local, src_offset, *remote, dst_offset, len, data, done)) {
    return;
  }
  auto op = std::make_shared<Operation>();
  op->done = std::move(done);
  op->dst = dst;
  op->deadline = deadline;
  op->pending = (len + piece_max - 1) / piece_max;

  std::vector<std::shared_ptr<Operation>> finished;
  {
    std::lock_guard lock(ops_mu_);
    ++unfinished_;
    uint64_t k = 0;
    for (uint64_t pos = 0; pos < len; pos += piece_max, ++k) {
      auto piece = std::make_unique<Piece>();
      piece->op = op;
      piece->kind = kind;
      piece->data = data;
      // A write with data goes rail 0 to rail 0, where the target reads its answers.
      piece->rail = kind == Kind::kWriteData ? 0 : (next_rail_++) % rails_.size();
      size_t theirs = remote->their_rail(k);
      piece->their_rail = theirs;
      uint64_t n = std::min<uint64_t>(piece_max, len - pos);
      piece->iov = iovec{local->data() + src_offset + pos, n};
      piece->desc = local->desc(piece->rail);
      piece->rma = fi_rma_iov{remote->remote_address(dst_offset + pos), n, remote->key(theirs)};
      piece->addr = remote->addr(piece->rail, theirs);
      // Behind a backlog, wait in line so pieces post in order of arrival.
      if (!backlog_.empty() || !post(piece, finished)) backlog_.push_back(std::move(piece));
    }
  }
  wake();
  deliver(finished);
}

bool FabricTransport::post(std::unique_ptr<Piece>& piece,
                           std::vector<std::shared_ptr<Operation>>& finished) {
  bool alive =
      piece->kind == Kind::kSend
          ? piece->peer->alive(0)
          : static_cast<const FabricRemoteRegion&>(*piece->op->dst).peer_alive(piece->their_rail);
  if (!alive) {
    piece_done(*piece, Status(Code::kUnavailable, "the peer process has exited"), finished);
    piece.reset();
    return true;
  }
  ssize_t rc = post_on_rail(*piece);
  if (rc == -FI_EAGAIN) return false;
  if (rc != 0) {
    const char* call = piece->kind == Kind::kSend ? "fi_sendmsg" : "fi_writemsg";
    piece_done(*piece, fabric::fi_error(call, static_cast<int>(rc)), finished);
    piece.reset();
    return true;
  }
  Piece* raw = piece.release();
  posted_.emplace(raw, std::unique_ptr<Piece>(raw));
  return true;
}

ssize_t FabricTransport::post_on_rail(Piece& piece) {
  Rail& rail = *rails_[piece.rail];
  if (piece.kind == Kind::kSend) {
    fi_msg msg{};
    msg.msg_iov = &piece.iov;
    msg.desc = &piece.desc;
    msg.iov_count = 1;
    msg.addr = piece.addr;
    msg.context = &piece.ctx;
    std::lock_guard lock(rail.mu);
    return fi_sendmsg(rail.ep, &msg, FI_COMPLETION);
  }
  fi_msg_rma msg{};
  msg.msg_iov = &piece.iov;
  msg.desc = &piece.desc;
  msg.iov_count = 1;
  msg.addr = piece.addr;
  msg.rma_iov = &piece.rma;
  msg.rma_iov_count = 1;
  msg.context = &piece.ctx;
  msg.data = piece.data;
  uint64_t flags = piece.kind == Kind::kWrite ? FI_COMPLETION | FI_DELIVERY_COMPLETE
                                              : FI_COMPLETION | FI_REMOTE_CQ_DATA;
  std::lock_guard lock(rail.mu);
  return fi_writemsg(rail.ep, &msg, flags);
}

void FabricTransport::piece_done(Piece& piece, const Status& s,
                                 std::vector<std::shared_ptr<Operation>>& finished) {
  Operation& op = *piece.op;
  if (!s.is_ok() && op.first_error.is_ok()) op.first_error = s;
  if (--op.pending == 0 && !op.finished) finish(piece.op, finished);
}

int FabricTransport::read_cq(size_t rail, std::vector<std::shared_ptr<Operation>>& finished) {
  Rail& r = *rails_[rail];
  fi_cq_data_entry entries[32];
  fi_cq_err_entry err{};
  char text[256] = {};
  const char* prov_text = nullptr;
  ssize_t n;
  {
    std::lock_guard lock(r.mu);
    n = fi_cq_read(r.cq, entries, 32);
    if (n == -FI_EAVAIL) {
      if (fi_cq_readerr(r.cq, &err, 0) != 1) return 0;
      prov_text = fi_cq_strerror(r.cq, err.prov_errno, err.err_data, text, sizeof text);
    }
  }
  auto complete = [&](void* context, const Status& s) {
    auto it = posted_.find(static_cast<Piece*>(context));
    if (it == posted_.end()) return;
    std::unique_ptr<Piece> piece = std::move(it->second);
    posted_.erase(it);
    piece_done(*piece, s, finished);
  };
  if (n > 0) {
    for (ssize_t i = 0; i < n; ++i) {
      const fi_cq_data_entry& e = entries[i];
      if ((e.flags & FI_REMOTE_WRITE) && (e.flags & FI_REMOTE_CQ_DATA)) {
        data_.push_back(e.data);  // a write_with_data into us: no context of ours
      } else if (ring_ && ring_->owns(e.op_context)) {
        // One of our receive buffers, whatever else the flags say: shm 1.17 hands a
        // multi-receive buffer back in an entry without FI_RECV (taken for a write's, the
        // buffer was never reposted and requests stalled once all were used; measured).
        received_.push_back(Received{e.op_context, static_cast<const std::byte*>(e.buf),
                                     (e.flags & FI_RECV) ? e.len : 0,
                                     ring_->returns_buffer(e.flags)});
      } else if (e.op_context != nullptr) {
        complete(e.op_context, Status());
      }
    }
    return static_cast<int>(n);
  }
  if (n == -FI_EAVAIL && ring_ && ring_->owns(err.op_context)) {
    // A message longer than the buffers (truncated) or a cancelled receive: dropped.
    ++dropped_messages_;
    if (ring_->returns_buffer(err.flags)) {
      received_.push_back(Received{err.op_context, nullptr, 0, true});
    }
    return 1;
  }
  if (n == -FI_EAVAIL && err.op_context == nullptr) return 1;  // not ours to complete
  if (n == -FI_EAVAIL) {
    complete(err.op_context, Status(Code::kUnavailable, fmt::format("RMA write failed: {} ({})",
                                                                    fabric_api::strerror(err.err),
                                                                    prov_text ? prov_text : "")));
    return 1;
  }
  return 0;
}

void FabricTransport::post_backlog(std::vector<std::shared_ptr<Operation>>& finished) {
  for (auto it = backlog_.begin(); it != backlog_.end();) {
    if ((*it)->op->finished || post(*it, finished)) {
      it = backlog_.erase(it);
    } else {
      ++it;  // this rail's queue is full; other rails may still take theirs
    }
  }
}

void FabricTransport::expire(std::vector<std::shared_ptr<Operation>>& finished) {
  auto now = Clock::now();
  auto check = [&](const std::shared_ptr<Operation>& op) {
    if (!op->finished && op->deadline < now) {
      op->first_error =
          Status(Code::kDeadlineExceeded, "RMA write not complete at the target by the deadline");
      finish(op, finished);
    }
  };
  for (auto& [p, piece] : posted_) check(piece->op);
  for (auto& piece : backlog_) check(piece->op);
}

void FabricTransport::progress_loop() {
  constexpr int kQuietPolls = 256;  // polls without work before going lazy
  constexpr int kSpinPolls = 32;    // with descriptors: polls without work before sleeping
  constexpr auto kLazyPoll = std::chrono::milliseconds(1);
  constexpr auto kIdlePoll = std::chrono::milliseconds(100);
  int quiet = 0;
  uint64_t tick = 0;
  auto last_work = Clock::now();
  std::vector<std::shared_ptr<Operation>> finished;
  while (!stop_) {
    int got = 0;
    {
      std::lock_guard poll(poll_mu_);
      {
        std::lock_guard lock(ops_mu_);
        for (size_t r = 0; r < rails_.size(); ++r) got += read_cq(r, finished);
        if (!backlog_.empty()) post_backlog(finished);
        if (++tick % 64 == 0 || quiet >= kSpinPolls) expire(finished);
      }
      deliver_incoming();
      if (listening_.load()) ring_->retry();
    }
    deliver(finished);
    if (got > 0) {
      quiet = 0;
      last_work = Clock::now();
      continue;
    }
    // Our own writes in flight need progress to *send* (the descriptor only says data
    // arrived), so only a thread with none sleeps on the descriptors.
    if (wake_fd_ >= 0 && unfinished_.load() == 0) {
      // Expecting writes, spin longer first: a value streaming in needs progress often.
      const bool waiting = busy();
      if (++quiet >= (waiting ? kQuietPolls : kSpinPolls)) {
        sleep_on_fds(waiting ? kLazyPoll : kIdlePoll);
      } else {
        std::this_thread::yield();
      }
      continue;
    }
    if (busy()) {
      quiet = 0;
      std::this_thread::yield();
      continue;
    }
    if (++quiet < kQuietPolls) {
      std::this_thread::yield();
      continue;
    }
    // A listener with no descriptor to sleep on (shm) sees a request only when it polls: it
    // sleeps an eighth of the time it has been idle (1 ms at least, kIdlePoll at most), so a
    // request after a short pause waits little and a long-idle server wakes ~10 times a
    // second.
    auto limit = kIdlePoll;
    if (listening_.load()) {
      // Work found by callers' progress() counts too: they poll while the thread sleeps.
      last_work = std::max(last_work, Clock::time_point(Clock::duration(last_work_ns_.load())));
      auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_work);
      limit = std::clamp(idle / 8, kLazyPoll, kIdlePoll);
    }
    std::unique_lock lock(signal_->mu);
    signal_->cv.wait_for(lock, limit, [&] { return stop_.load() || busy(); });
  }
}

void FabricTransport::sleep_on_fds(std::chrono::milliseconds limit) {
  std::vector<pollfd> fds;
  fds.reserve(rails_.size() + 1);
  for (auto& rail : rails_) {
    std::lock_guard lock(rail->mu);
    fid* cq = &rail->cq->fid;
    if (fi_trywait(rail->fabric, &cq, 1) != FI_SUCCESS) return;
    fds.push_back(pollfd{rail->wait_fd, POLLIN, 0});
  }
  fds.push_back(pollfd{wake_fd_, POLLIN, 0});
  if (stop_) return;
  if (poll(fds.data(), fds.size(), static_cast<int>(limit.count())) > 0 &&
      (fds.back().revents & POLLIN)) {
    uint64_t n;
    (void)!::read(wake_fd_, &n, sizeof n);  // clears the eventfd
  }
}

}  // namespace fabric

Result<std::unique_ptr<Transport>> make_fabric_transport(const TransportOptions& options) {
  auto rails = fabric::open_rails(options);
  if (!rails) return rails.status();
  return std::unique_ptr<Transport>(std::make_unique<fabric::FabricTransport>(std::move(*rails)));
}

}  // namespace kvrdma::transport
