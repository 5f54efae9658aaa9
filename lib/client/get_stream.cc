#include "client/get_stream.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "rpc/security.h"
#include "rpc/status_map.h"

namespace kvrdma::client {
namespace {

// Completion-queue tags of a stream's operations.
void* const kWriteTag = reinterpret_cast<void*>(1);
void* const kReadTag = reinterpret_cast<void*>(2);
void* const kFinishTag = reinterpret_cast<void*>(3);

std::chrono::system_clock::time_point wall(GetStreams::Clock::time_point t) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(t -
                                                                         GetStreams::Clock::now());
}

}  // namespace

// Declared in destruction order reversed: the queue outlives the call, the context the stream.
struct GetStreams::Stream {
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::StreamGetRequest, v1::StreamGetReply>> rw;
  uint64_t next_id = 1;
  // The last GET's write had not reported back when its reply came; the next GET collects it
  // first (one write at a time per stream). Waiting for it then would cost a wake-up per GET.
  bool write_pending = false;
  // Reused by every GET of the stream, so their buffers are too.
  v1::StreamGetRequest request;
  v1::StreamGetReply reply;

  // Only after close() (the call is finished, so every operation still pending completes).
  // The queue is drained before `rw` goes: an operation still pending when its reader-writer is
  // destroyed would be finalized on freed memory (a write's send buffer freed twice: fault_test
  // caught it with a write pending when the server was killed).
  ~Stream() {
    cq.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq.Next(&tag, &ok)) {
    }
    rw.reset();
  }
};

GetStreams::GetStreams(v1::KvCache::Stub* stub, std::string auth_token, size_t max_streams)
    : stub_(stub), auth_token_(std::move(auth_token)), max_streams_(max_streams) {}

GetStreams::~GetStreams() {
  std::vector<std::unique_ptr<Stream>> idle;
  {
    std::lock_guard lock(mu_);
    idle.swap(idle_);
  }
  for (auto& s : idle) (void)close(std::move(s), true);
}

uint64_t GetStreams::streams_opened() const {
  std::lock_guard lock(mu_);
  return opened_;
}

size_t GetStreams::open_streams() const {
  std::lock_guard lock(mu_);
  return open_;
}

std::unique_ptr<GetStreams::Stream> GetStreams::acquire(bool& fresh) {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto s = std::move(idle_.back());
      idle_.pop_back();
      fresh = false;
      return s;
    }
    if (unsupported_ || open_ >= max_streams_) return nullptr;
    ++open_;
    ++opened_;
  }
  auto s = std::make_unique<Stream>();
  rpc::add_token(s->ctx, auth_token_);
  // Corked: the headers go with the first request instead of in a packet of their own (and
  // StartCall starts no operation, so there is no tag of it to wait for).
  s->ctx.set_initial_metadata_corked(true);
  s->rw = stub_->PrepareAsyncGetStream(&s->ctx, &s->cq);
  s->rw->StartCall(nullptr);
  fresh = true;
  return s;
}

void GetStreams::release(std::unique_ptr<Stream> s) {
  std::lock_guard lock(mu_);
  idle_.push_back(std::move(s));
}

grpc::Status GetStreams::close(std::unique_ptr<Stream> s, bool cancel) {
  if (cancel) s->ctx.TryCancel();
  grpc::Status status;
  s->rw->Finish(&status, kFinishTag);
  void* tag = nullptr;
  bool ok = false;
  // A cancelled or broken stream finishes at once; the bound only guards against a stuck peer.
  auto limit = std::chrono::system_clock::now() + std::chrono::seconds(5);
  while (true) {
    auto r = s->cq.AsyncNext(&tag, &ok, limit);
    if (r == grpc::CompletionQueue::TIMEOUT) {
      s->ctx.TryCancel();
      limit = std::chrono::system_clock::now() + std::chrono::seconds(5);
      continue;
    }
    if (r != grpc::CompletionQueue::GOT_EVENT || tag == kFinishTag) break;
  }
  {
    std::lock_guard lock(mu_);
    --open_;
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) unsupported_ = true;
  }
  return status;
}

std::optional<Status> GetStreams::settle(const Result& r, std::string_view call,
                                         std::string_view target) {
  if (r.outcome == Outcome::kNoStream) return std::nullopt;
  const Code c = r.status.code();
  if (r.outcome == Outcome::kFailed && (c == Code::kUnavailable || c == Code::kDeadlineExceeded)) {
    return r.status.with_context(fmt::format("{} at kv-server {}", call, target));
  }
  return r.status;
}

GetStreams::Result GetStreams::get(const v1::GetRequest& request, v1::GetReply* reply,
                                   Clock::time_point deadline) {
  return exchange([&](v1::StreamGetRequest& r) { *r.mutable_get() = request; },
                  [&](v1::StreamGetReply& r) { reply->Swap(r.mutable_get()); }, deadline);
}

GetStreams::Result GetStreams::get_many(const v1::GetManyRequest& request, v1::GetManyReply* reply,
                                        Clock::time_point deadline) {
  return exchange([&](v1::StreamGetRequest& r) { *r.mutable_get_many() = request; },
                  [&](v1::StreamGetReply& r) { reply->Swap(r.mutable_get_many()); }, deadline);
}

GetStreams::Result GetStreams::exchange(const std::function<void(v1::StreamGetRequest&)>& fill,
                                        const std::function<void(v1::StreamGetReply&)>& take,
                                        Clock::time_point deadline) {
  if (max_streams_ == 0) return {Outcome::kNoStream, Status()};
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (Clock::now() >= deadline) {
      return {Outcome::kFailed, Status(Code::kDeadlineExceeded, "deadline passed before the GET")};
    }
    bool fresh = false;
    std::unique_ptr<Stream> s = acquire(fresh);
    if (!s) return {Outcome::kNoStream, Status()};
    auto limit = wall(deadline);
    bool timed_out = false;
    // Waits until `done` (collecting whichever tag comes meanwhile). At the deadline it cancels
    // the stream, which ends its operations at once, and sets timed_out.
    bool wrote = !s->write_pending, read = false, write_ok = true, read_ok = false;
    auto wait_for = [&](bool& done) {
      while (!done) {
        void* tag = nullptr;
        bool ok = false;
        auto r = s->cq.AsyncNext(&tag, &ok, limit);
        if (r == grpc::CompletionQueue::TIMEOUT) {
          if (timed_out) return;  // cancelled and still nothing: give the stream up
          timed_out = true;
          s->ctx.TryCancel();
          limit = std::chrono::system_clock::now() + std::chrono::seconds(5);
          continue;
        }
        if (r != grpc::CompletionQueue::GOT_EVENT) return;
        (tag == kWriteTag ? wrote : read) = true;
        (tag == kWriteTag ? write_ok : read_ok) = ok;
      }
    };
    wait_for(wrote);  // the previous GET's write
    const uint64_t id = s->next_id++;
    if (wrote && write_ok && !timed_out) {
      s->request.set_request_id(id);
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      s->request.set_timeout_ms(static_cast<uint32_t>(std::clamp<int64_t>(left, 1, 60000)));
      fill(s->request);
      s->rw->Write(s->request, kWriteTag);
      wrote = false;
      s->rw->Read(&s->reply, kReadTag);
      wait_for(read);
      s->write_pending = !wrote;
    }
    if (!timed_out && write_ok && read_ok && s->reply.request_id() == id) {
      take(s->reply);
      Status status = rpc::from_item(s->reply.status());
      release(std::move(s));
      return {Outcome::kDone, std::move(status)};
    }
    const uint64_t got = s->reply.request_id();
    // Cancel a stream that still works (a mismatched reply); a failed one reports why it failed.
    grpc::Status gs = close(std::move(s), read_ok);
    if (timed_out) {
      return {Outcome::kFailed, Status(Code::kDeadlineExceeded, "deadline exceeded")};
    }
    if (read_ok) {  // a reply to another request: the server broke the protocol
      return {Outcome::kFailed,
              Status(Code::kInternal, fmt::format("GetStream: the reply to request {} came for "
                                                  "request {}",
                                                  got, id))};
    }
    if (gs.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      return {Outcome::kNoStream, Status()};  // an older server: single calls from now on
    }
    // A stream that broke while it sat idle (the server restarted, the connection dropped):
    // try once more on a new one.
    if (!fresh && attempt == 0) continue;
    return {Outcome::kFailed, rpc::from_grpc(gs, "GetStream")};
  }
  return {Outcome::kFailed, Status(Code::kUnavailable, "GetStream failed twice")};
}

}  // namespace kvrdma::client
