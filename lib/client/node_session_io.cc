// NodeSession's single-key data path: a GET's round trips and the receive space it offers, and
// the inline and two-phase PUT. Kept out of node_session.cc; see node_session.h.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "client/call_versions.h"
#include "client/node_session.h"
#include "client/staged_write.h"
#include "memory/memory_pool.h"
#include "rpc/status_map.h"

namespace kvrdma::client {

Status NodeSession::get_round_trip(const v1::GetRequest& req, v1::GetReply* reply,
                                   Steady::time_point d) {
  if (auto r = GetStreams::settle(streams_->get(req, reply, d), "Get", target_)) return *r;
  reply->Clear();
  grpc::ClientContext ctx;
  set_deadline(ctx, d);
  grpc::Status s = stub_->Get(&ctx, req, reply);
  return s.ok() ? Status() : call_failed(s, "Get");
}

// Values up to the inline threshold come back in the reply, so the first request offers no
// space (and so needs no extent and no transport expectation, which on libfabric makes the
// progress thread poll eagerly); a larger value then costs a second request with exactly the
// space it needs. After a large value the next GET guesses large again, with an extent of that
// size, so a run of large GETs takes one round trip each.
namespace {
constexpr uint64_t kChannelPushMax = 4ull << 20;
}  // namespace

Result<ValueView> NodeSession::get_once(const SessionState& st, std::string_view key,
                                        uint64_t epoch, Steady::time_point d) {
  const std::shared_ptr<ReceiveBuffer>& buffer = st.buffer;
  memory::MemoryPool& pool = *buffer->pool;
  memory::Allocation extent;
  transport::WriteExpectation incoming;
  if (uint64_t guess =
          std::min<uint64_t>(large_hint_.load(std::memory_order_relaxed), pool.size() / 4)) {
    if (auto a = pool.allocate(guess)) extent = std::move(*a);
    // The server may write the value into our buffer from the moment the request leaves.
    if (extent.valid()) incoming = buffer->transport->expect_writes();
  }
  v1::GetRequest req;
  req.set_session_id(st.hello.session_id());
  req.set_key(std::string(key));
  req.set_map_epoch(epoch);
  req.set_min_version(call_versions().min_version);
  for (int attempt = 0; attempt < 4; ++attempt) {
    req.set_dest_offset(extent.valid() ? extent.offset() : 0);
    req.set_dest_capacity(extent.valid() ? extent.capacity() : 0);
    v1::GetReply reply;
    // The server's channel thread pushes every value it is asked for itself, one at a time;
    // values expected above kChannelPushMax go over gRPC, whose handler threads push in
    // parallel (16 MiB GETs at 16 in flight ran at 0.42x over the channel alone).
    // Replicas: the channel carries no min_version (read your writes), so a GET that needs one
    // goes over gRPC.
    const bool via_channel = st.channel && st.channel->usable() &&
                             req.dest_capacity() <= kChannelPushMax && req.min_version() == 0;
    Status s = via_channel ? channel_get(st, req, &reply, d) : get_round_trip(req, &reply, d);
    if (!s.is_ok()) {
      if (extent.valid() && write_may_still_land(s)) buffer->retire(std::move(extent));
      return s;
    }
    if (reply.is_inline()) {
      if (extent.valid()) large_hint_.store(0, std::memory_order_relaxed);
      auto bytes = std::make_shared<std::string>(std::move(*reply.mutable_value()));
      const auto* data = reinterpret_cast<const std::byte*>(bytes->data());
      size_t n = bytes->size();
      return ValueView(std::move(bytes), data, n, false);
    }
    if (reply.written()) {
      large_hint_.store(reply.value_len(), std::memory_order_relaxed);
      auto held = std::make_shared<HeldExtent>(HeldExtent{buffer, std::move(extent)});
      const std::byte* data = held->extent.data();
      return ValueView(std::move(held), data, reply.value_len(), true);
    }
    uint64_t need = reply.value_len();
    large_hint_.store(need, std::memory_order_relaxed);
    extent.reset();
    if (need > pool.size()) {
      return Status(Code::kFailedPrecondition,
                    fmt::format("value of {} bytes does not fit the {}-byte receive buffer; raise "
                                "--buffer-mb to at least {}",
                                need, pool.size(), (need + (1 << 20) - 1) >> 20));
    }
    auto a = pool.allocate_until(need, d);  // waits for views to give space back
    if (!a)
      return a.status().with_context(fmt::format("waiting for {} bytes of receive buffer", need));
    extent = std::move(*a);
    if (!incoming) incoming = buffer->transport->expect_writes();
  }
  return Status(Code::kUnavailable, "the value kept changing size while being read; try again");
}

Status NodeSession::put_once(const SessionState& st, std::string_view key, std::string_view value,
                             uint64_t ttl_ms, uint64_t epoch, Steady::time_point d) {
  const v1::HelloReply& hello = st.hello;
  if (value.size() > hello.max_value_bytes()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("value of {} bytes exceeds the server's maximum of {} bytes; raise "
                              "--max-value-mb on the server or split the value",
                              value.size(), hello.max_value_bytes()));
  }
  if (value.size() > put_inline_threshold(hello))
    return put_large(st, key, value, ttl_ms, epoch, d);
  // Replicas (call_versions.h): the channel does not replicate writes; one refused on it with
  // the typed detail goes again over gRPC.
  if (!call_versions().replicated) {
    auto r = channel_put(st, key, value, ttl_ms, epoch, d);
    if (r && !rpc::is_replicated_slot(*r)) return *r;
  }
  v1::PutRequest req;
  req.set_session_id(hello.session_id());
  req.set_key(std::string(key));
  req.set_value(std::string(value));
  req.set_ttl_ms(ttl_ms);
  req.set_map_epoch(epoch);
  v1::PutReply reply;
  grpc::ClientContext ctx;
  set_deadline(ctx, d);
  grpc::Status s = stub_->Put(&ctx, req, &reply);
  if (s.ok()) call_versions().acked = reply.version();
  return s.ok() ? Status() : call_failed(s, "Put");
}

// Two-phase PUT. Only a rejected PutBegin reports the session gone (nothing reserved, nothing
// written, so with_session may repeat it); a failure after it is never repeated here: the PUT
// fails, and a lost session is re-opened for the next call. A PutCommit refused with a
// wrong-owner detail keeps that detail, so the router redoes the whole PUT at the new owner.
Status NodeSession::put_large(const SessionState& st, std::string_view key, std::string_view value,
                              uint64_t ttl_ms, uint64_t epoch, Steady::time_point d) {
  v1::PutBeginRequest begin;
  begin.set_session_id(st.hello.session_id());
  begin.set_key(std::string(key));
  begin.set_value_len(value.size());
  begin.set_ttl_ms(ttl_ms);
  begin.set_map_epoch(epoch);
  v1::PutBeginReply reserved;
  {
    grpc::ClientContext ctx;
    set_deadline(ctx, d);
    grpc::Status s = stub_->PutBegin(&ctx, begin, &reserved);
    if (!s.ok()) return call_failed(s, "PutBegin");
  }
  // The source of a transport write must be registered memory: stage through the receive
  // buffer, in pipelined chunks, so a value larger than the buffer still goes.
  Status failed =
      staged_write(*transport_, *st.buffer, value, st.server_pool, reserved.remote_offset(), d);
  grpc::ClientContext ctx;
  set_deadline(ctx, failed.is_ok() ? d : deadline());
  Status result;
  if (!failed.is_ok()) {
    v1::PutAbortRequest abort;
    abort.set_session_id(st.hello.session_id());
    abort.set_reservation_id(reserved.reservation_id());
    v1::PutAbortReply reply;
    (void)stub_->PutAbort(&ctx, abort, &reply);
    result = failed.with_context("writing the value into the server's pool");
  } else {
    v1::PutCommitRequest commit;
    commit.set_session_id(st.hello.session_id());
    commit.set_reservation_id(reserved.reservation_id());
    v1::PutCommitReply reply;
    grpc::Status s = stub_->PutCommit(&ctx, commit, &reply);
    if (s.ok()) call_versions().acked = reply.version();
    if (s.ok()) return Status();
    result = call_failed(s, "PutCommit");
  }
  if (session_gone(result)) {
    (void)reopen(st, deadline());
    return Status(Code::kUnavailable,
                  fmt::format("kv-server {} lost the session during a two-phase PUT; the value "
                              "was not stored; put it again",
                              target_));
  }
  return result;
}

}  // namespace kvrdma::client
