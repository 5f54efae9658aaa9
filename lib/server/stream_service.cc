// GetStream: single and batch GETs over one long-lived bidirectional stream, so a small GET (or
// a GetMany) costs one message each way instead of a whole call (headers, trailers, a call
// object on both ends). The kvrdma client sends one request at a time per stream; the server
// does not rely on that.
//
// The reactor keeps one read pending at all times (up to kMaxOpen requests being served or
// answered; past that it stops reading until replies drain, which pushes back on the client
// through gRPC flow control), serves each request inline in OnReadDone (no thread hop), and
// writes the replies one at a time in the order they became ready: inline values at once, large
// ones when their transport write completes. The client matches them by request_id.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <mutex>
#include <vector>

#include "rpc/status_map.h"
#include "server/service.h"

namespace kvrdma::server {
namespace {

constexpr size_t kMaxOpen = 256;

class GetStreamReactor final
    : public grpc::ServerBidiReactor<v1::StreamGetRequest, v1::StreamGetReply> {
 public:
  GetStreamReactor(KvService& service, grpc::CallbackServerContext* ctx, Status denied)
      : service_(service), ctx_(ctx) {
    if (!denied.is_ok()) {
      Finish(rpc::to_grpc(denied));
      return;
    }
    if (!service_.add_stream(ctx_)) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the kv-server is shutting down"));
      return;
    }
    registered_ = true;
    reading_ = true;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side, or the stream broke: end once all is answered
      std::unique_lock lock(mu_);
      reading_ = false;
      read_closed_ = true;
      act(next_steps(lock), lock);
      return;
    }
    auto reply = std::make_unique<v1::StreamGetReply>();
    reply->set_request_id(request_.request_id());
    v1::StreamGetReply* r = reply.get();
    {
      std::lock_guard lock(mu_);
      ++open_;
    }
    auto answer = [this, r](Status s) { send(std::unique_ptr<v1::StreamGetReply>(r), s); };
    // The stream's own deadline is not the request's: the client says how long it waits.
    auto deadline = write_deadline(ctx_);
    if (uint32_t ms = request_.timeout_ms(); ms > 0) {
      deadline =
          std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(ms));
    }
    std::optional<Status> now;
    switch (request_.body_case()) {
      case v1::StreamGetRequest::kGet:
        now = service_.serve_get(request_.get(), r->mutable_get(), deadline, answer);
        break;
      case v1::StreamGetRequest::kGetMany:
        now = service_.serve_get_many(request_.get_many(), r->mutable_get_many(), deadline, answer);
        break;
      default:
        now = Status(Code::kInvalidArgument,
                     "GetStream request carries neither `get` nor `get_many`");
    }
    std::unique_lock lock(mu_);
    if (now) {
      rpc::to_item(r->mutable_status(), *now);
      queue_.push_back(std::move(reply));
    } else {
      (void)reply.release();  // the transport completion owns it now
    }
    reading_ = false;
    act(next_steps(lock), lock);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(mu_);
    writing_.reset();
    --open_;
    if (!ok) {  // the client went away: drop what is queued
      write_failed_ = true;
      open_ -= queue_.size();
      queue_.clear();
    }
    act(next_steps(lock), lock);
  }

  void OnDone() override {
    if (registered_) service_.remove_stream(ctx_);
    delete this;
  }

 private:
  // What to start once mu_ is released. gRPC operations are never started under mu_: a
  // reaction may run on another thread at once and take it.
  struct Steps {
    v1::StreamGetReply* write = nullptr;
    bool read = false;
    bool finish = false;
  };

  // From the transport's completion thread: the reply to a large value is ready.
  void send(std::unique_ptr<v1::StreamGetReply> reply, const Status& s) {
    rpc::to_item(reply->mutable_status(), s);
    std::unique_lock lock(mu_);
    if (write_failed_) {
      --open_;
    } else {
      queue_.push_back(std::move(reply));
    }
    act(next_steps(lock), lock);
  }

  // Decides the next steps from the state, claiming them. mu_ held.
  Steps next_steps(std::unique_lock<std::mutex>&) {
    Steps st;
    if (!writing_ && !queue_.empty() && !write_failed_) {
      writing_ = std::move(queue_.front());
      queue_.pop_front();
      st.write = writing_.get();
    }
    if (!reading_ && !read_closed_ && !write_failed_ && open_ < kMaxOpen) {
      reading_ = true;
      st.read = true;
    }
    // The end: no read pending or to come, nothing being served or written.
    if (!finished_ && !reading_ && (read_closed_ || write_failed_) && open_ == 0 && !writing_) {
      finished_ = true;
      st.finish = true;
    }
    return st;
  }

  // Releases mu_ and starts the steps. After Finish this object may be gone at once.
  void act(Steps st, std::unique_lock<std::mutex>& lock) {
    const bool failed = write_failed_;
    lock.unlock();
    if (st.write != nullptr) StartWrite(st.write);
    if (st.read) StartRead(&request_);
    if (st.finish) {
      Finish(failed ? grpc::Status(grpc::StatusCode::CANCELLED, "the client went away")
                    : grpc::Status::OK);
    }
  }

  KvService& service_;
  grpc::CallbackServerContext* ctx_;
  bool registered_ = false;       // with the service, for stop_streams
  v1::StreamGetRequest request_;  // only the pending read touches it

  std::mutex mu_;
  bool reading_ = false;      // a read is pending
  bool read_closed_ = false;  // the last read failed: no more requests
  bool write_failed_ = false;
  bool finished_ = false;
  size_t open_ = 0;  // requests read and not yet answered (serving, queued or being written)
  std::unique_ptr<v1::StreamGetReply> writing_;            // the reply being written
  std::deque<std::unique_ptr<v1::StreamGetReply>> queue_;  // replies waiting for it
};

}  // namespace

bool KvService::add_stream(grpc::CallbackServerContext* ctx) {
  std::lock_guard lock(streams_mu_);
  if (streams_stopped_) return false;
  streams_.insert(ctx);
  return true;
}

void KvService::remove_stream(grpc::CallbackServerContext* ctx) {
  std::lock_guard lock(streams_mu_);
  streams_.erase(ctx);
}

void KvService::stop_streams() {
  std::lock_guard lock(streams_mu_);
  streams_stopped_ = true;
  // Other threads cannot end a stream while the lock is held, but a cancel may end the one it
  // cancels on this thread (erasing it from streams_), so walk a copy and skip the gone ones.
  std::vector<grpc::CallbackServerContext*> open(streams_.begin(), streams_.end());
  for (auto* ctx : open) {
    if (streams_.count(ctx) != 0) ctx->TryCancel();
  }
}

grpc::ServerBidiReactor<v1::StreamGetRequest, v1::StreamGetReply>* KvService::GetStream(
    grpc::CallbackServerContext* ctx) {
  return new GetStreamReactor(*this, ctx, authorize(ctx));
}

}  // namespace kvrdma::server
