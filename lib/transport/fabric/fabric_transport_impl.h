// FabricTransport's class, shared by fabric_transport.cc (writes and the progress thread) and
// fabric_messages.cc (Messages). Private to the transport layer; see fabric_transport.cc for
// how it works and how it locks.
#pragma once

#include <fmt/format.h>
#include <pthread.h>
#include <rdma/fabric.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "memory/memory_pool.h"
#include "transport/fabric/fabric_memory.h"
#include "transport/fabric/fabric_rail.h"
#include "transport/fabric/fabric_receive.h"
#include "transport/fabric/fabric_transport.h"
#include "transport/transport.h"

namespace kvrdma::transport::fabric {

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
  uint64_t data = 0;                          // kWriteData: the target's CQ data
  std::shared_ptr<const PeerAddresses> peer;  // kSend: the destination (writes use op->dst)
  size_t rail = 0;                            // ours
  size_t their_rail = 0;                      // the peer's
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

  Result<std::unique_ptr<LocalRegion>> register_memory(void* ptr, size_t len,
                                                       MemoryKind kind) override {
    if (ptr == nullptr || len == 0) {
      return Status(Code::kInvalidArgument,
                    fmt::format("cannot register {} bytes at {}: give a non-null pointer and a "
                                "non-zero length",
                                len, fmt::ptr(ptr)));
    }
    if (kind != MemoryKind::kHost) {
      return Status(Code::kInvalidArgument,
                    fmt::format("memory kind {} is not supported; only host memory (0) is",
                                static_cast<int>(kind)));
    }
    auto r = FabricLocalRegion::wrap(rails_, ptr, len);
    if (!r) {
      return r.status().with_context(fmt::format(
          "registering {} bytes of caller memory (if the locked-memory limit is too low, raise "
          "it: ulimit -l)",
          len));
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

  Status listen(size_t max_bytes, MessageHandler on_message) override;

  void on_remote_data(DataHandler on_data) override;

  void send(Peer& peer, const LocalRegion& src, size_t offset, size_t len,
            Clock::time_point deadline, Completion done) override;

  size_t progress() override;

  void write_with_data(const LocalRegion& src, size_t src_offset, std::shared_ptr<RemoteRegion> dst,
                       size_t dst_offset, size_t len, uint64_t data, Clock::time_point deadline,
                       Completion done) override {
    write_impl(Kind::kWriteData, data, src, src_offset, std::move(dst), dst_offset, len, deadline,
               std::move(done));
  }

 private:
  // write() and write_with_data(): checks, then pieces (one only with data, which must arrive
  // as one completion), small ones injected.
  void write_impl(Kind kind, uint64_t data, const LocalRegion& src, size_t src_offset,
                  std::shared_ptr<RemoteRegion> dst, size_t dst_offset, size_t len,
                  Clock::time_point deadline, Completion done);

  // fi_inject_writedata: true when done (ran `done`), false on -FI_EAGAIN (post it instead).
  bool inject_write_data(const FabricLocalRegion& local, size_t src_offset,
                         const FabricRemoteRegion& remote, size_t dst_offset, size_t len,
                         uint64_t data, Completion& done);

  // tcp;ofi_rxm may keep an injected message queued until the next progress call: progress
  // here (or wake the progress thread when another thread polls). shm copies it at once.
  void kick_after_inject();

  // Posts `piece` on its rail. True when it is consumed: posted (now in posted_), or failed (its
  // operation records the error). False on -FI_EAGAIN: the caller keeps it for later.
  // Caller holds ops_mu_.
  bool post(std::unique_ptr<Piece>& piece, std::vector<std::shared_ptr<Operation>>& finished);

  ssize_t post_on_rail(Piece& piece);

  // Records one piece's outcome; an operation whose last piece this was is appended to
  // `finished`. Caller holds ops_mu_.
  void piece_done(Piece& piece, const Status& s, std::vector<std::shared_ptr<Operation>>& finished);

  void finish(const std::shared_ptr<Operation>& op,
              std::vector<std::shared_ptr<Operation>>& finished) {
    op->finished = true;
    --unfinished_;
    finished.push_back(op);
  }

  // Reads `rail`'s CQ. Returns how many entries were read. Caller holds ops_mu_.
  int read_cq(size_t rail, std::vector<std::shared_ptr<Operation>>& finished);

  // Posts what the backlog holds, in order, as far as the queues take it. Pieces of operations
  // already finished (expired) are dropped. Caller holds ops_mu_.
  void post_backlog(std::vector<std::shared_ptr<Operation>>& finished);

  // Finishes operations past their deadline with DEADLINE_EXCEEDED. Their posted pieces stay
  // tracked until the CQ returns them (the provider still owns their contexts). Caller holds
  // ops_mu_.
  void expire(std::vector<std::shared_ptr<Operation>>& finished);

  // Hands what read_cq() gathered to the handlers, with no lock held, then gives the receive
  // buffers back to the provider. Caller holds poll_mu_.
  void deliver_incoming();

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
  void progress_loop();

  // Sleeps until a CQ's descriptor or wake() signals, or `limit` passes (deadlines are checked
  // at least that often). fi_trywait first: it refuses (and we poll again) when the provider has
  // work pending that a sleep would not see.
  void sleep_on_fds(std::chrono::milliseconds limit);

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
  // Lock order: poll_mu_, handlers_mu_, ops_mu_, a rail's mu (each may be skipped).
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
  int wake_fd_ = -1;      // eventfd that ends sleep_on_fds(); -1 when the rails have no descriptors
  std::thread progress_;  // last: starts after, and is joined before, everything above goes
};

}  // namespace kvrdma::transport::fabric
