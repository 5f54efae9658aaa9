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
#include <atomic>
#include <condition_variable>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "memory/memory_pool.h"
#include "transport/fabric/fabric_memory.h"
#include "transport/fabric/fabric_rail.h"
#include "transport/fabric/fabric_receive.h"

namespace kvrdma::transport {
namespace {

using fabric::FabricLocalRegion;
using fabric::FabricPeer;
using fabric::FabricRemoteRegion;
using fabric::PeerAddresses;
using fabric::Rail;

constexpr uint64_t kMaxPiece = 8ull << 20;

// One user write, possibly split in pieces.
struct Operation {
  Completion done;
  std::shared_ptr<RemoteRegion> dst;  // kept alive until the write completes
  Transport::Clock::time_point deadline;
  size_t pending = 0;  // pieces not completed yet
  bool finished = false;
  Status first_error;
};

// What a piece posts: an RMA write (complete at the target), a write with remote CQ data
// (complete locally; the target's completion proves delivery), or a message.
enum class Kind : uint8_t { kWrite, kWriteData, kSend };

// One piece: everything needed to (re)post it, and the context libfabric hands back.
struct Piece {
  fi_context2 ctx;  // the CQ entry's op_context points here
  std::shared_ptr<Operation> op;
  Kind kind = Kind::kWrite;
  uint64_t data = 0;                         // kWriteData: the target's CQ data
  std::shared_ptr<const PeerAddresses> peer;  // kSend: the destination (writes use op->dst)
  size_t rail = 0;        // ours
  size_t their_rail = 0;  // the peer's
  iovec iov{};
  void* desc = nullptr;
  fi_rma_iov rma{};
  fi_addr_t addr = FI_ADDR_UNSPEC;
};

class FabricTransport final : public Transport, public Messages {
 public:
  using Clock = Transport::Clock;

  explicit FabricTransport(std::vector<std::shared_ptr<Rail>> rails)
      : rails_(std::move(rails)), address_(fabric::encode_address(rails_)) {
    bool fds = std::all_of(rails_.begin(), rails_.end(), [](auto& r) { return r->wait_fd >= 0; });
    if (fds) wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    progress_ = std::thread([this] {
      pthread_setname_np(pthread_self(), kProgressThreadName);  // for top -H, perf, tests
      progress_loop();
    });
  }

  ~FabricTransport() override {
    stop_ = true;
    wake();
    progress_.join();
    if (wake_fd_ >= 0) close(wake_fd_);
    ring_.reset();
    std::vector<std::shared_ptr<Operation>> left;
    {
      std::lock_guard lock(ops_mu_);
      auto collect = [&](const std::shared_ptr<Operation>& op) {
        if (!op->finished) left.push_back(op);
        op->finished = true;
      };
      for (auto& [p, piece] : posted_) collect(piece->op);
      for (auto& piece : backlog_) collect(piece->op);
    }
    for (auto& op : left) {
      op->done(Status(Code::kUnavailable, "transport shut down before the write completed"));
    }
    // Regions may keep the rails open after us; posted pieces live until their endpoint closes.
    for (auto& [p, piece] : posted_) {
      Rail& rail = *rails_[piece->rail];
      std::lock_guard lock(rail.mu);
      rail.retired.push_back(std::shared_ptr<Piece>(std::move(piece)));
    }
    posted_.clear();
  }

  std::string kind() const override { return fmt::format("fabric/{}", rails_[0]->provider()); }
  std::string description() const override {
    const fi_info* i = rails_[0]->info;
    std::string s = fmt::format("libfabric {}, fabric {}, domain {}", i->fabric_attr->prov_name,
                                i->fabric_attr->name, i->domain_attr->name);
    if (rails_.size() > 1) s += fmt::format(", {} rails", rails_.size());
    return s;
  }
  std::string address() const override { return address_; }

  Result<std::unique_ptr<LocalRegion>> allocate(size_t len) override {
    if (len == 0) return Status(Code::kInvalidArgument, "cannot register 0 bytes");
    if (len > SIZE_MAX - memory::kPageSize) {
      return Status(Code::kResourceExhausted, fmt::format("cannot register {} bytes", len));
    }
    size_t size = (len + memory::kPageSize - 1) / memory::kPageSize * memory::kPageSize;
    auto r = FabricLocalRegion::create(rails_, size);
    if (!r) {
      return r.status().with_context(
          "registering memory (raise the locked-memory limit: ulimit -l)");
    }
    return std::unique_ptr<LocalRegion>(std::move(*r));
  }

  Result<std::shared_ptr<Peer>> connect(std::string_view peer_address) override {
    auto peer = fabric::insert_peer(rails_, peer_address);
    if (!peer) return peer.status();
    return std::shared_ptr<Peer>(std::make_shared<fabric::FabricPeer>(std::move(*peer)));
  }

  void write(const LocalRegion& src, size_t src_offset, std::shared_ptr<RemoteRegion> dst,
             size_t dst_offset, size_t len, Clock::time_point deadline, Completion done) override {
    write_impl(Kind::kWrite, 0, src, src_offset, std::move(dst), dst_offset, len, deadline,
               std::move(done));
  }

  WriteExpectation expect_writes() override {
    // With descriptors the progress thread wakes for incoming data by itself.
    if (signal_->expected.fetch_add(1) == 0 && wake_fd_ < 0) wake();
    // The result shares the signal, not the transport, so it may outlive the transport.
    std::shared_ptr<ProgressSignal> signal = signal_;
    return WriteExpectation(signal.get(), [signal](void*) { signal->expected.fetch_sub(1); });
  }

  Messages* messages() override { return this; }

  size_t data_bytes() const override { return std::min<size_t>(rails_[0]->cq_data_size(), 8); }

  Status listen(size_t max_bytes, MessageHandler on_message) override {
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

  void on_remote_data(DataHandler on_data) override {
    std::lock_guard lock(handlers_mu_);
    on_data_ = std::move(on_data);
  }

  void send(Peer& peer, const LocalRegion& src, size_t offset, size_t len,
            Clock::time_point deadline, Completion done) override {
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
                              "than the provider's {} bytes", offset, len, src.size(),
                              rails_[0]->info->ep_attr->max_msg_size)));
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

  size_t progress() override {
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

  void write_with_data(const LocalRegion& src, size_t src_offset,
                       std::shared_ptr<RemoteRegion> dst, size_t dst_offset, size_t len,
                       uint64_t data, Clock::time_point deadline, Completion done) override {
    write_impl(Kind::kWriteData, data, src, src_offset, std::move(dst), dst_offset, len, deadline,
               std::move(done));
  }

 private:
  // write() and write_with_data(): checks, then pieces (one only with data, which must arrive
  // as one completion), small ones injected.
  void write_impl(Kind kind, uint64_t data, const LocalRegion& src, size_t src_offset,
                  std::shared_ptr<RemoteRegion> dst, size_t dst_offset, size_t len,
                  Clock::time_point deadline, Completion done) {
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

  // fi_inject_writedata: true when done (ran `done`), false on -FI_EAGAIN (post it instead).
  bool inject_write_data(const FabricLocalRegion& local, size_t src_offset,
                         const FabricRemoteRegion& remote, size_t dst_offset, size_t len,
                         uint64_t data, Completion& done) {
    if (!remote.peer_alive(0)) {
      done(Status(Code::kUnavailable, "the peer process has exited"));
      return true;
    }
    ssize_t rc;
    {
      std::lock_guard lock(rails_[0]->mu);
      rc = fi_inject_writedata(rails_[0]->ep, local.data() + src_offset, len, data,
                               remote.addr(0, 0), remote.remote_address(dst_offset),
                               remote.key(0));
    }
    if (rc == -FI_EAGAIN) return false;
    kick_after_inject();
    done(rc == 0 ? Status() : fabric::fi_error("fi_inject_writedata", static_cast<int>(rc)));
    return true;
  }

  // tcp;ofi_rxm may keep an injected message queued until the next progress call: wake the
  // progress thread if it sleeps. shm copies it into the peer's queue at once.
  void kick_after_inject() {
    if (!rails_[0]->is_shm()) wake();
  }

  // Posts `piece` on its rail. True when it is consumed: posted (now in posted_), or failed (its
  // operation records the error). False on -FI_EAGAIN: the caller keeps it for later.
  // Caller holds ops_mu_.
  bool post(std::unique_ptr<Piece>& piece, std::vector<std::shared_ptr<Operation>>& finished) {
    bool alive = piece->kind == Kind::kSend
                     ? piece->peer->alive(0)
                     : static_cast<const FabricRemoteRegion&>(*piece->op->dst)
                           .peer_alive(piece->their_rail);
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

  ssize_t post_on_rail(Piece& piece) {
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

  // Records one piece's outcome; an operation whose last piece this was is appended to
  // `finished`. Caller holds ops_mu_.
  void piece_done(Piece& piece, const Status& s, std::vector<std::shared_ptr<Operation>>& finished) {
    Operation& op = *piece.op;
    if (!s.is_ok() && op.first_error.is_ok()) op.first_error = s;
    if (--op.pending == 0 && !op.finished) finish(piece.op, finished);
  }

  void finish(const std::shared_ptr<Operation>& op,
              std::vector<std::shared_ptr<Operation>>& finished) {
    op->finished = true;
    --unfinished_;
    finished.push_back(op);
  }

  // Reads `rail`'s CQ. Returns how many entries were read. Caller holds ops_mu_.
  int read_cq(size_t rail, std::vector<std::shared_ptr<Operation>>& finished) {
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
        if (e.flags & FI_REMOTE_CQ_DATA) {
          data_.push_back(e.data);  // a write_with_data into us: no context of ours
        } else if ((e.flags & FI_RECV) && ring_ && ring_->owns(e.op_context)) {
          received_.push_back(Received{e.op_context, static_cast<const std::byte*>(e.buf),
                                       e.len, ring_->returns_buffer(e.flags)});
        } else if (e.op_context != nullptr) {
          complete(e.op_context, Status());
        }
      }
      return static_cast<int>(n);
    }
    if (n == -FI_EAVAIL && (err.flags & FI_RECV)) {
      // A message longer than the buffers (truncated) or a cancelled receive: dropped.
      if (ring_ && ring_->owns(err.op_context)) {
        ++dropped_messages_;
        if (ring_->returns_buffer(err.flags)) {
          received_.push_back(Received{err.op_context, nullptr, 0, true});
        }
      }
      return 1;
    }
    if (n == -FI_EAVAIL && err.op_context == nullptr) return 1;  // not ours to complete
    if (n == -FI_EAVAIL) {
      complete(err.op_context,
               Status(Code::kUnavailable, fmt::format("RMA write failed: {} ({})",
                                                      fi_strerror(err.err),
                                                      prov_text ? prov_text : "")));
      return 1;
    }
    return 0;
  }

  // Posts what the backlog holds, in order, as far as the queues take it. Pieces of operations
  // already finished (expired) are dropped. Caller holds ops_mu_.
  void post_backlog(std::vector<std::shared_ptr<Operation>>& finished) {
    for (auto it = backlog_.begin(); it != backlog_.end();) {
      if ((*it)->op->finished || post(*it, finished)) {
        it = backlog_.erase(it);
      } else {
        ++it;  // this rail's queue is full; other rails may still take theirs
      }
    }
  }

  // Finishes operations past their deadline with DEADLINE_EXCEEDED. Their posted pieces stay
  // tracked until the CQ returns them (the provider still owns their contexts). Caller holds
  // ops_mu_.
  void expire(std::vector<std::shared_ptr<Operation>>& finished) {
    auto now = Clock::now();
    auto check = [&](const std::shared_ptr<Operation>& op) {
      if (!op->finished && op->deadline < now) {
        op->first_error = Status(Code::kDeadlineExceeded,
                                 "RMA write not complete at the target by the deadline");
        finish(op, finished);
      }
    };
    for (auto& [p, piece] : posted_) check(piece->op);
    for (auto& piece : backlog_) check(piece->op);
  }

  // Hands what read_cq() gathered to the handlers, with no lock held, then gives the receive
  // buffers back to the provider. Caller holds poll_mu_.
  void deliver_incoming() {
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

  static void deliver(std::vector<std::shared_ptr<Operation>>& finished) {
    for (auto& op : finished) {
      Status s = op->first_error;
      op->dst.reset();
      op->done(s);
    }
    finished.clear();
  }

  // Manual progress: writes we issue, and writes into our memory, complete only while we read
  // our CQs. While anything needs it — our own writes unfinished, a live expectation
  // (expect_writes), or a completion just seen — the thread polls, yielding the core between
  // polls. When the provider gives its CQs file descriptors (tcp;ofi_rxm) and none of our own
  // writes is in flight, it instead sleeps in poll() on them after a short spin (incoming data,
  // a completion or wake() ends the sleep): a client waiting for a GET's value leaves the cores
  // to the threads doing the work. Between polls it sleeps at most kLazyPoll while anything is
  // in flight or expected (deadlines are checked that often), and at most kIdlePoll when nothing
  // is: write() wakes it, expect_writes() too where the CQs have no descriptor (with one, the
  // incoming data does), so the longer sleep only delays provider work nobody announced (a late
  // write into a buffer whose GET gave up: up to 100 ms more over shm, measured). Idle, the
  // thread wakes ~10 times a second instead of ~800 (measured: an idle kv-server over tcp or shm
  // went from 5.4% of a core and ~800 context switches a second to 0.2% and ~17; every kvrdma
  // client pays the same).
  void progress_loop() {
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

  // Sleeps until a CQ's descriptor or wake() signals, or `limit` passes (deadlines are checked
  // at least that often). fi_trywait first: it refuses (and we poll again) when the provider has
  // work pending that a sleep would not see.
  void sleep_on_fds(std::chrono::milliseconds limit) {
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

  bool busy() const { return unfinished_.load() > 0 || signal_->expected.load() > 0; }

  // Wakes the progress thread out of a lazy wait. Taking the mutex after the state changed means
  // the thread either saw the change before waiting or is waiting and gets the notification.
  void wake() {
    { std::lock_guard lock(signal_->mu); }
    signal_->cv.notify_one();
    if (wake_fd_ >= 0) {
      uint64_t one = 1;
      (void)!::write(wake_fd_, &one, sizeof one);
    }
  }

  // What expect_writes() shares with its results; they may outlive the transport.
  struct ProgressSignal {
    std::atomic<int> expected{0};
    std::mutex mu;
    std::condition_variable cv;
  };

  const std::vector<std::shared_ptr<Rail>> rails_;
  const std::string address_;
  std::shared_ptr<ProgressSignal> signal_ = std::make_shared<ProgressSignal>();

  std::mutex ops_mu_;
  std::unordered_map<Piece*, std::unique_ptr<Piece>> posted_;  // guarded by ops_mu_
  std::list<std::unique_ptr<Piece>> backlog_;                  // guarded by ops_mu_
  uint64_t next_rail_ = 0;                                     // guarded by ops_mu_
  std::atomic<size_t> unfinished_{0};  // operations not finished; written under ops_mu_

  // Messages: the receive ring (set once by listen(), under ops_mu_ and handlers_mu_) and what
  // read_cq() gathered for deliver_incoming(), both under poll_mu_: whoever polls (the progress
  // thread, or a caller in progress()) reads the CQs and delivers what they held before the next
  // one may, so a receive buffer is reposted only after every message in it was handled.
  // Lock order: poll_mu_, ops_mu_, a rail's mu; handlers_mu_ alone.
  std::mutex poll_mu_;
  std::atomic<Clock::rep> last_work_ns_{0};  // when a caller's progress() last found work
  struct Received {
    void* context;  // the receive buffer
    const std::byte* bytes;
    size_t len;
    bool give_back;  // repost the buffer after the message is handled
  };
  std::unique_ptr<fabric::ReceiveRing> ring_;
  std::atomic<bool> listening_{false};
  std::vector<Received> received_;
  std::vector<uint64_t> data_;
  uint64_t dropped_messages_ = 0;  // guarded by ops_mu_
  std::mutex handlers_mu_;
  MessageHandler on_message_;  // guarded by handlers_mu_
  DataHandler on_data_;        // guarded by handlers_mu_

  std::atomic<bool> stop_{false};
  int wake_fd_ = -1;  // eventfd that ends sleep_on_fds(); -1 when the rails have no descriptors
  std::thread progress_;  // last: starts after, and is joined before, everything above goes
};

}  // namespace

Result<std::unique_ptr<Transport>> make_fabric_transport(const TransportOptions& options) {
  auto rails = fabric::open_rails(options);
  if (!rails) return rails.status();
  return std::unique_ptr<Transport>(std::make_unique<FabricTransport>(std::move(*rails)));
}

}  // namespace kvrdma::transport
