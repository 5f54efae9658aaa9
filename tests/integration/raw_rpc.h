// Raw gRPC calls to a kv-server, bypassing kvrdma::Client, so tests can send what a well-behaved
// client never would (unknown sessions, out-of-range offsets, forged descriptors).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "kv_cache.grpc.pb.h"

namespace kvrdma::testing {

class RawRpc {
 public:
  explicit RawRpc(const std::string& addr)
      : stub_(v1::KvCache::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()))) {
  }

  // Calls stub method `fn` with a 10 s deadline.
  template <typename Req, typename Rep, typename Fn>
  grpc::Status call(Fn fn, const Req& req, Rep* rep) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ((*stub_).*fn)(&ctx, req, rep);
  }

 private:
  std::unique_ptr<v1::KvCache::Stub> stub_;
};

}  // namespace kvrdma::testing
