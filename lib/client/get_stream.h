// Single and batch GETs over long-lived GetStream streams (proto/kv_cache.proto), the client's
// fast path for small values: a unary call costs a call object, headers and trailers on both
// ends; a stream message costs none of that.
//
// A GET borrows an idle stream, starts its request's write and its reply's read together, and
// waits for both on the stream's own completion queue, on the calling thread: no hand-off to
// another thread, so no extra wake-up per GET (measured: one stream shared by all threads
// through an I/O thread cost more context switches than this). Several threads of one Client
// use several streams at once, up to a limit; past it, or against a server without GetStream,
// the caller uses the unary Get. A GET past its deadline cancels its stream.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kv_cache.grpc.pb.h"
#include "kvrdma/status.h"

namespace kvrdma::client {

class GetStreams {
 public:
  using Clock = std::chrono::steady_clock;

  // `stub` outlives this object. `max_streams` 0 turns streams off (every call says kNoStream).
  GetStreams(v1::KvCache::Stub* stub, std::string auth_token, size_t max_streams);
  ~GetStreams();  // closes the idle streams; call it with no GET running
  GetStreams(const GetStreams&) = delete;
  GetStreams& operator=(const GetStreams&) = delete;

  enum class Outcome {
    kDone,      // `reply` holds the server's answer, `status` the GET's outcome
    kFailed,    // no answer: `status` says why (UNAVAILABLE, DEADLINE_EXCEEDED, ...)
    kNoStream,  // every stream is busy and the limit reached, or the server has no GetStream
  };
  struct Result {
    Outcome outcome = Outcome::kNoStream;
    Status status;
  };

  // One GET round trip on a stream. A stream that broke while idle (the server restarted) is
  // replaced once, transparently: a GET has no effect a second attempt could double.
  Result get(const v1::GetRequest& request, v1::GetReply* reply, Clock::time_point deadline);
  // The same for a batch (GetMany's request and reply, GetMany's limits).
  Result get_many(const v1::GetManyRequest& request, v1::GetManyReply* reply,
                  Clock::time_point deadline);

  // What the caller reports for a streamed request: nullopt after kNoStream (send it as a unary
  // call instead), else its status, UNAVAILABLE and DEADLINE_EXCEEDED naming `call` and `target`.
  static std::optional<Status> settle(const Result& r, std::string_view call,
                                      std::string_view target);

  // Streams opened so far, and open now (idle or busy); for tests.
  uint64_t streams_opened() const;
  size_t open_streams() const;

 private:
  struct Stream;
  // An idle stream, or a new one while under the limit; nullptr otherwise. `fresh` says which.
  std::unique_ptr<Stream> acquire(bool& fresh);
  void release(std::unique_ptr<Stream> s);
  // The round trip of get() and get_many(): `fill` sets the request's body, `take` moves the
  // answer out of the reply.
  Result exchange(const std::function<void(v1::StreamGetRequest&)>& fill,
                  const std::function<void(v1::StreamGetReply&)>& take, Clock::time_point deadline);
  // Ends a stream (cancelled first when `cancel`) and returns the status it ended with.
  grpc::Status close(std::unique_ptr<Stream> s, bool cancel);

  v1::KvCache::Stub* stub_;
  std::string auth_token_;
  size_t max_streams_;

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Stream>> idle_;  // guarded by mu_
  size_t open_ = 0;                            // guarded by mu_; idle and busy
  uint64_t opened_ = 0;                        // guarded by mu_
  bool unsupported_ = false;                   // guarded by mu_; the server said UNIMPLEMENTED
};

}  // namespace kvrdma::client
