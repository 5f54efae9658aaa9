// get_many / put_many: the batch calls of Client, over the GetMany / PutMany RPCs (a GetMany
// over a GetStream stream when one is free). Kept out of
// client.cc; they need only what BatchChannel carries.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "client/get_stream.h"
#include "client/receive_buffer.h"
#include "kv_cache.grpc.pb.h"
#include "kvrdma/client.h"

namespace kvrdma::client {

// A snapshot of the session the batch runs on.
struct BatchChannel {
  v1::KvCache::Stub* stub = nullptr;
  uint64_t session_id = 0;
  uint64_t map_epoch = 0;  // the cluster map epoch the caller routed by (0: none)
  uint64_t inline_threshold = 0;
  uint64_t max_value_bytes = 0;
  std::shared_ptr<ReceiveBuffer> buffer;
  std::chrono::milliseconds timeout{0};
  std::string target;      // for error messages
  std::string auth_token;  // sent with every call when not empty
  // GetMany rides these when given and one is free (no call set-up); else the unary call.
  GetStreams* streams = nullptr;
  // The single-key PUT, for values above the inline threshold (two-phase).
  std::function<Status(std::string_view, std::string_view, uint64_t)> put_one;
};

std::vector<Result<ValueView>> get_many(const BatchChannel& ch,
                                        std::span<const std::string_view> keys);
std::vector<Status> put_many(const BatchChannel& ch, std::span<const KeyValue> items,
                             uint64_t ttl_ms);

}  // namespace kvrdma::client
