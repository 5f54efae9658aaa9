// A GET of a large value pins it while the transport writes it; the reply must not reach the
// client before that pin is released. The mock transport completes a write inside write()
// itself, so a pin still held by the caller of write() would outlive the reply. Here the
// transport's write() is held open after its completion ran, until the test has looked at the
// pin count: deterministic, not a race the test hopes to lose. Over GetStream, a reply starts
// from inside the completion; a unary Get's or GetMany's reply leaves only once its handler has
// returned, so those cannot show it (and would wait for the gate). The same transport records
// the deadline a write is given: a stream request's own timeout_ms, not the stream's.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <string>

#include "kv_cache.grpc.pb.h"
#include "service_harness.h"

using kvrdma::Status;
using kvrdma::fuzz::InProcessService;
namespace transport = kvrdma::transport;

namespace {

// Forwards to the mock; write() runs the completion, then waits (at most 10 s) for open().
class HeldOpenTransport final : public kvrdma::fuzz::ForwardingTransport {
 public:
  explicit HeldOpenTransport(std::unique_ptr<transport::Transport> inner)
      : ForwardingTransport(std::move(inner)), opened_(gate_.get_future().share()) {}

  void open() { gate_.set_value(); }
  int writes() const { return writes_; }
  Clock::time_point last_deadline() const {
    std::lock_guard lock(mu_);
    return last_deadline_;
  }

  void write(const transport::LocalRegion& src, size_t src_offset,
             std::shared_ptr<transport::RemoteRegion> dst, size_t dst_offset, size_t len,
             Clock::time_point deadline, transport::Completion done) override {
    ++writes_;
    {
      std::lock_guard lock(mu_);
      last_deadline_ = deadline;
    }
    inner().write(src, src_offset, std::move(dst), dst_offset, len, deadline,
                  [this, done = std::move(done)](Status s) {
                    done(s);  // the reply may leave from here on
                    (void)opened_.wait_for(std::chrono::seconds(10));
                  });
  }

 private:
  std::promise<void> gate_;
  std::shared_future<void> opened_;
  std::atomic<int> writes_{0};
  mutable std::mutex mu_;
  Clock::time_point last_deadline_;  // guarded by mu_
};

}  // namespace

// Puts a 200 KiB value (above the inline threshold) under "big".
HeldOpenTransport* start(std::unique_ptr<InProcessService>& service, const std::string& value) {
  HeldOpenTransport* held = nullptr;
  service = std::make_unique<InProcessService>(true, [&](std::unique_ptr<transport::Transport> t) {
    auto h = std::make_unique<HeldOpenTransport>(std::move(t));
    held = h.get();
    return std::unique_ptr<transport::Transport>(std::move(h));
  });
  kvrdma::v1::PutRequest put;
  put.set_session_id(service->live_session());
  put.set_key("big");
  put.set_value(value);
  REQUIRE(service->call("Put", put.SerializeAsString(), nullptr).ok());
  return held;
}

TEST_CASE("pins: a GET reply over GetStream arrives after its value is unpinned",
          "[fuzz][transfer]") {
  std::unique_ptr<InProcessService> service;
  const std::string value(200 << 10, 'w');
  HeldOpenTransport* held = start(service, value);
  REQUIRE(held != nullptr);
  auto stub = kvrdma::v1::KvCache::NewStub(service->channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stream = stub->GetStream(&ctx);
  kvrdma::v1::StreamGetRequest req;
  req.set_request_id(7);
  req.mutable_get()->set_session_id(service->live_session());
  req.mutable_get()->set_key("big");
  req.mutable_get()->set_dest_capacity(value.size());
  req.set_timeout_ms(1500);  // the stream's own deadline is 20 s: the request's must win
  REQUIRE(stream->Write(req));
  kvrdma::v1::StreamGetReply reply;
  const bool got = stream->Read(&reply);
  const auto replied = std::chrono::steady_clock::now();
  const uint64_t pinned_at_reply = service->core().store->stats().pinned;
  held->open();
  REQUIRE(got);
  CHECK(reply.request_id() == 7);
  CHECK(reply.status().code() == 0);
  CHECK(reply.get().written());
  CHECK(held->writes() == 1);
  CHECK(pinned_at_reply == 0);
  // The transport write was bounded by the request's timeout, not by the stream's deadline.
  CHECK(held->last_deadline() <= replied + std::chrono::milliseconds(1500));
  stream->WritesDone();
  CHECK(stream->Finish().ok());
}
