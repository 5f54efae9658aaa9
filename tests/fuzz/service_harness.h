// The real KvService in-process for fuzzing and extreme-field tests: a real pool and store on the
// mock transport, served over gRPC's in-process channel, and called by method name with raw
// request bytes, so every handler (including ones added later) is reached the way a client's
// bytes reach it. A client-side mock region and a live session let requests pass the session
// check and exercise the handlers' deeper paths.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/service.h"

namespace kvrdma::fuzz {

// A transport that forwards every call to `inner`: a base for test decorators, which override
// what they change (usually write()).
class ForwardingTransport : public transport::Transport {
 public:
  explicit ForwardingTransport(std::unique_ptr<transport::Transport> inner)
      : inner_(std::move(inner)) {}

  std::string kind() const override { return inner_->kind(); }
  std::string description() const override { return inner_->description(); }
  std::string address() const override { return inner_->address(); }
  Result<std::unique_ptr<transport::LocalRegion>> allocate(size_t len) override {
    return inner_->allocate(len);
  }
  Result<std::unique_ptr<transport::LocalRegion>> register_memory(void* ptr, size_t len,
                                                                  MemoryKind kind) override {
    return inner_->register_memory(ptr, len, kind);
  }
  Result<std::shared_ptr<transport::Peer>> connect(std::string_view peer) override {
    return inner_->connect(peer);
  }
  transport::WriteExpectation expect_writes() override { return inner_->expect_writes(); }
  void write(const transport::LocalRegion& src, size_t src_offset,
             std::shared_ptr<transport::RemoteRegion> dst, size_t dst_offset, size_t len,
             Clock::time_point deadline, transport::Completion done) override {
    inner_->write(src, src_offset, std::move(dst), dst_offset, len, deadline, std::move(done));
  }

 protected:
  transport::Transport& inner() { return *inner_; }

 private:
  std::unique_ptr<transport::Transport> inner_;
};

class InProcessService {
 public:
  // Lets a test put its own transport in front of the server's (a decorator of the mock).
  using WrapTransport =
      std::function<std::unique_ptr<transport::Transport>(std::unique_ptr<transport::Transport>)>;

  // A 16 MiB pool, eviction as given; every other option at its default. With `listen`, also
  // serves on a free loopback port (address()), for a real kvrdma::Client. The server's
  // transport (and client_transport()) are the mock unless `transport` says otherwise; a
  // transport that cannot be opened aborts (check that it opens first).
  explicit InProcessService(bool evict = true, WrapTransport wrap = {}, bool listen = false,
                            const TransportOptions& transport = {});
  ~InProcessService();
  InProcessService(const InProcessService&) = delete;
  InProcessService& operator=(const InProcessService&) = delete;

  // The methods of kvrdma.v1.KvCache, in declaration order.
  const std::vector<std::string>& methods() const { return methods_; }
  // An empty request message of `method`'s input type.
  std::unique_ptr<google::protobuf::Message> new_request(const std::string& method) const;

  // Sends `request` (serialized proto bytes, possibly malformed) to `method`; waits at most
  // `limit` (a handler that does not answer by then comes back as DEADLINE_EXCEEDED).
  grpc::Status call(const std::string& method, const std::string& request, std::string* reply,
                    std::chrono::milliseconds limit = std::chrono::milliseconds(10000));

  // A session id the server knows, opened by Hello with a real client region; re-opened when a
  // request ended it.
  uint64_t live_session();
  // If `msg` has a session_id field, sets it to live_session().
  void use_live_session(google::protobuf::Message& msg);

  server::ServerCore& core() { return core_; }
  // "127.0.0.1:<port>" when constructed with `listen`, else empty.
  std::string address() const { return port_ ? "127.0.0.1:" + std::to_string(port_) : ""; }
  // The in-process channel, for typed stubs (streaming calls).
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  server::ServerCore core_;
  std::unique_ptr<server::KvService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  std::vector<std::string> methods_;
  int port_ = 0;
  std::unique_ptr<transport::Transport> client_transport_;
  std::vector<std::unique_ptr<transport::LocalRegion>> client_regions_;  // live sessions' regions
  uint64_t session_ = 0;
};

}  // namespace kvrdma::fuzz
