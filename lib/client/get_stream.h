// Single GETs over long-lived GetStream streams (proto/kv_cache.proto), the client's fast path
// for small values: a unary call costs a call object, headers and trailers on both ends, a
// stream message costs none of that.
//
// A GET borrows an idle stream, writes its request and reads the reply on the calling thread
// (no hand-off to another thread, so no extra wake-up), and gives the stream back. Several
// threads of one Client run several streams at once, up to a limit; past it, or against a server
// without GetStream, the caller uses the unary Get. Per-GET deadlines: a watchdog thread cancels
// a stream whose GET outlived its deadline, which ends the blocked read.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kv_cache.grpc.pb.h"
#include "kvrdma/status.h"

namespace kvrdma::client {

class GetStreams {
 public:
  using Clock = std::chrono::steady_clock;

  // `stub` outlives this object. `max_streams` 0 turns streams off (every call says kNoStream).
  // `tick` bounds how late past its deadline a GET is cancelled.
  GetStreams(v1::KvCache::Stub* stub, std::string auth_token, size_t max_streams,
             std::chrono::milliseconds tick);
  ~GetStreams();  // cancels open streams; GETs still running on them fail
  GetStreams(const GetStreams&) = delete;
  GetStreams& operator=(const GetStreams&) = delete;

  enum class Outcome {
    kDone,      // `reply` holds the server's answer, `status` the GET's outcome
    kFailed,    // the stream failed: `status` says why (UNAVAILABLE, DEADLINE_EXCEEDED, ...)
    kNoStream,  // no stream free (limit reached) or the server has no GetStream: use unary Get
  };
  struct Result {
    Outcome outcome = Outcome::kNoStream;
    Status status;
  };

  // One GET round trip on a stream. A stream that broke while idle (the server restarted) is
  // replaced once, transparently: the request never reached a server then.
  Result get(const v1::GetRequest& request, v1::GetReply* reply, Clock::time_point deadline);

  // Streams open now (idle or busy); for tests and stats.
  size_t open_streams() const;

 private:
  struct Stream;
  // An idle stream, or a new one while under the limit; nullptr otherwise. `fresh` says which.
  std::shared_ptr<Stream> acquire(bool& fresh);
  void release(std::shared_ptr<Stream> s);
  // Ends a broken stream and returns the status the server (or gRPC) gave it.
  grpc::Status close(const std::shared_ptr<Stream>& s);
  void watchdog_loop();

  v1::KvCache::Stub* stub_;
  std::string auth_token_;
  size_t max_streams_;
  std::chrono::milliseconds tick_;
  std::atomic<bool> unsupported_{false};  // the server answered UNIMPLEMENTED

  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Stream>> idle_;  // guarded by mu_
  std::vector<std::shared_ptr<Stream>> all_;   // guarded by mu_; the watchdog scans it
  bool stopping_ = false;                      // guarded by mu_
  std::condition_variable cv_;
  std::thread watchdog_;
};

}  // namespace kvrdma::client
