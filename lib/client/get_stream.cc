#include "client/get_stream.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include "rpc/security.h"
#include "rpc/status_map.h"

namespace kvrdma::client {
namespace {

int64_t ns_since_epoch(GetStreams::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

Status item_status(const v1::ItemStatus& s) {
  if (s.code() == 0) return Status();
  Code c = s.code() <= static_cast<uint32_t>(Code::kInternal) ? static_cast<Code>(s.code())
                                                              : Code::kInternal;
  return Status(c, s.message());
}

}  // namespace

struct GetStreams::Stream {
  grpc::ClientContext ctx;  // declared first: outlives `rw`
  std::unique_ptr<grpc::ClientReaderWriter<v1::StreamGetRequest, v1::StreamGetReply>> rw;
  std::atomic<int64_t> deadline_ns{0};  // busy: the GET's deadline (steady clock); 0: idle
  std::atomic<bool> timed_out{false};   // the watchdog cancelled the stream
  uint64_t next_id = 1;
  // Reused by every GET of the stream, so their buffers are too.
  v1::StreamGetRequest request;
  v1::StreamGetReply reply;
};

GetStreams::GetStreams(v1::KvCache::Stub* stub, std::string auth_token, size_t max_streams,
                       std::chrono::milliseconds tick)
    : stub_(stub), auth_token_(std::move(auth_token)), max_streams_(max_streams), tick_(tick) {
  if (max_streams_ > 0) watchdog_ = std::thread([this] { watchdog_loop(); });
}

GetStreams::~GetStreams() {
  std::vector<std::shared_ptr<Stream>> all;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    all = all_;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  // Cancel, then collect the status of the idle ones (busy ones belong to their GET).
  for (auto& s : all) s->ctx.TryCancel();
  std::vector<std::shared_ptr<Stream>> idle;
  {
    std::lock_guard lock(mu_);
    idle.swap(idle_);
  }
  for (auto& s : idle) (void)s->rw->Finish();
}

size_t GetStreams::open_streams() const {
  std::lock_guard lock(mu_);
  return all_.size();
}

std::shared_ptr<GetStreams::Stream> GetStreams::acquire(bool& fresh) {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto s = std::move(idle_.back());
      idle_.pop_back();
      fresh = false;
      return s;
    }
    if (stopping_ || all_.size() >= max_streams_ || unsupported_) return nullptr;
    all_.push_back(nullptr);  // holds the place while the stream opens outside the lock
  }
  auto s = std::make_shared<Stream>();
  rpc::add_token(s->ctx, auth_token_);
  // The headers go with the first request instead of in a packet of their own.
  s->ctx.set_initial_metadata_corked(true);
  s->rw = stub_->GetStream(&s->ctx);
  fresh = true;
  {
    std::lock_guard lock(mu_);
    for (auto& slot : all_) {
      if (slot == nullptr) {
        slot = s;
        break;
      }
    }
  }
  cv_.notify_all();  // the watchdog has a stream to watch now
  return s;
}

void GetStreams::release(std::shared_ptr<Stream> s) {
  std::lock_guard lock(mu_);
  idle_.push_back(std::move(s));
}

grpc::Status GetStreams::close(const std::shared_ptr<Stream>& s) {
  // A stream whose read or write failed is over: Finish returns at once with its status.
  while (s->rw->Read(&s->reply)) {
  }
  grpc::Status status = s->rw->Finish();
  std::lock_guard lock(mu_);
  for (auto it = all_.begin(); it != all_.end(); ++it) {
    if (*it == s) {
      all_.erase(it);
      break;
    }
  }
  return status;
}

GetStreams::Result GetStreams::get(const v1::GetRequest& request, v1::GetReply* reply,
                                   Clock::time_point deadline) {
  if (max_streams_ == 0 || unsupported_) return {Outcome::kNoStream, Status()};
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (Clock::now() >= deadline) {
      return {Outcome::kFailed, Status(Code::kDeadlineExceeded, "deadline passed before the GET")};
    }
    bool fresh = false;
    std::shared_ptr<Stream> s = acquire(fresh);
    if (!s) return {Outcome::kNoStream, Status()};
    const uint64_t id = s->next_id++;
    s->request.set_request_id(id);
    *s->request.mutable_get() = request;
    s->timed_out = false;
    s->deadline_ns = ns_since_epoch(deadline);
    bool ok = s->rw->Write(s->request) && s->rw->Read(&s->reply);
    s->deadline_ns = 0;
    if (ok && s->reply.request_id() == id) {
      reply->Swap(s->reply.mutable_get());
      Status status = item_status(s->reply.status());
      release(std::move(s));
      return {Outcome::kDone, std::move(status)};
    }
    if (ok) {  // a reply to another request: the server broke the protocol; drop the stream
      uint64_t got = s->reply.request_id();
      s->ctx.TryCancel();
      (void)close(s);
      return {Outcome::kFailed,
              Status(Code::kInternal, fmt::format("GetStream: reply to request {} came for "
                                                  "request {}", got, id))};
    }
    const bool timed_out = s->timed_out;
    grpc::Status gs = close(s);
    if (timed_out) {
      return {Outcome::kFailed, Status(Code::kDeadlineExceeded, "deadline exceeded")};
    }
    if (gs.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      unsupported_ = true;  // an older server: single calls from now on
      return {Outcome::kNoStream, Status()};
    }
    // A stream that broke while it sat idle (the server restarted, the connection dropped):
    // try once more on a new one. A GET has no effect a second attempt could double.
    if (!fresh && attempt == 0) continue;
    return {Outcome::kFailed, rpc::from_grpc(gs)};
  }
  return {Outcome::kFailed, Status(Code::kUnavailable, "GetStream failed twice")};
}

void GetStreams::watchdog_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (all_.empty()) {
      cv_.wait(lock, [this] { return stopping_ || !all_.empty(); });
    } else {
      cv_.wait_for(lock, tick_, [this] { return stopping_; });
    }
    const int64_t now = ns_since_epoch(Clock::now());
    for (auto& s : all_) {
      if (s == nullptr) continue;
      int64_t d = s->deadline_ns;
      if (d != 0 && d <= now && !s->timed_out.exchange(true)) s->ctx.TryCancel();
    }
  }
}

}  // namespace kvrdma::client
