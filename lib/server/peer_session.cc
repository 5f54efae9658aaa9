#include "server/peer_session.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <thread>

#include "common/logging.h"
#include "kvrdma/version.h"
#include "rpc/security.h"
#include "rpc/status_map.h"

namespace kvrdma::server {

PeerSession::PeerSession(ServerCore& core, uint32_t self, cluster::NodeInfo peer)
    : core_(core), self_(self), peer_(std::move(peer)) {}

Result<std::unique_ptr<PeerSession>> PeerSession::open(ServerCore& core, uint32_t self,
                                                       const cluster::NodeInfo& peer,
                                                       Steady::time_point deadline) {
  auto creds = rpc::channel_credentials(core.options.security);
  if (!creds) return creds.status();
  std::unique_ptr<PeerSession> s(new PeerSession(core, self, peer));
  grpc::ChannelArguments args;
  const int max_msg = static_cast<int>(
      std::min<uint64_t>(2 * core.options.inline_threshold + (4 << 20), (1ull << 31) - 1));
  args.SetMaxReceiveMessageSize(max_msg);
  args.SetMaxSendMessageSize(max_msg);
  // A peer that restarts is dialled again soon, not after gRPC's default backoff of minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  // gRPC also takes this as the deadline of each connection attempt: 100 ms failed attempts to
  // a busy peer before its first SETTINGS frame ("tcp handshaker shutdown").
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  s->channel_ = grpc::CreateCustomChannel(peer.address, *creds, args);
  s->stub_ = v1::KvCache::NewStub(s->channel_);
  auto st = s->hello(deadline);
  if (!st) return st.status();
  return s;
}

PeerSession::~PeerSession() {
  auto st = current();
  if (!st) return;
  grpc::ClientContext ctx;
  prepare(ctx, Steady::now() + std::chrono::seconds(1));
  v1::GoodbyeRequest req;
  req.set_session_id(st->hello.session_id());
  v1::GoodbyeReply reply;
  (void)stub_->Goodbye(&ctx, req, &reply);  // the peer's lease ends it anyway
}

void PeerSession::prepare(grpc::ClientContext& ctx, Steady::time_point deadline) const {
  ctx.set_deadline(std::chrono::system_clock::now() + (deadline - Steady::now()));
  rpc::add_token(ctx, core_.options.security.auth_token);
}

std::shared_ptr<const PeerSession::State> PeerSession::current() const {
  std::lock_guard lock(mu_);
  return state_;
}

Result<std::shared_ptr<const PeerSession::State>> PeerSession::hello(Steady::time_point deadline) {
  v1::HelloRequest req;
  req.set_client_id(self_ + 1);
  req.set_peer_node(self_ + 1);
  req.set_transport_kind(core_.transport->kind());
  req.set_transport_address(core_.transport->address());
  req.set_memory_descriptor(core_.pool_region->descriptor());
  req.set_region_size(core_.pool_region->size());
  req.set_version(version());
  auto st = std::make_shared<State>();
  grpc::ClientContext ctx;
  prepare(ctx, deadline);
  ctx.set_wait_for_ready(true);  // a peer that just started may not listen for a moment
  grpc::Status s = stub_->Hello(&ctx, req, &st->hello);
  if (!s.ok()) {
    return rpc::from_grpc(s, fmt::format("Hello to node {} at {}", peer_.id, peer_.address))
        .with_context(fmt::format("opening a session with node {} at {} to move values", peer_.id,
                                  peer_.address));
  }
  auto peer = core_.transport->connect(st->hello.transport_address());
  if (!peer) return peer.status().with_context(fmt::format("connecting to node {}", peer_.id));
  auto pool = (*peer)->attach(st->hello.memory_descriptor());
  if (!pool) return pool.status().with_context(fmt::format("attaching node {}'s pool", peer_.id));
  st->pool = std::move(*pool);
  std::shared_ptr<const State> fresh = st;
  std::lock_guard lock(mu_);
  state_ = fresh;
  return fresh;
}

Status PeerSession::with_retries(std::string_view what, Steady::time_point deadline,
                                 const std::function<Status(const State&)>& call) {
  auto pause = std::chrono::milliseconds(10);
  bool reopened = false;
  for (int attempt = 0;; ++attempt) {
    std::shared_ptr<const State> st = current();
    Status s;
    if (!st) {
      auto opened = hello(deadline);
      s = opened ? call(**opened) : opened.status();
    } else {
      s = call(*st);
    }
    if (s.is_ok()) return s;
    const bool lost = rpc::is_session_lost(s);
    const bool not_yet = rpc::wrong_owner_of(s).has_value();  // its map is older than ours
    const bool down = s.code() == Code::kUnavailable;
    if (lost && !reopened) {
      reopened = true;
      std::lock_guard lock(mu_);
      if (state_ == st) state_.reset();  // the next attempt opens a new one
      continue;
    }
    if ((!not_yet && !down) || Steady::now() + pause >= deadline || attempt >= 1000) {
      return s.with_context(fmt::format("{} at node {} ({})", what, peer_.id, peer_.address));
    }
    // Bounded by the deadline and the attempt count; the peer learns the map within moments.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(200));
  }
}

Status PeerSession::put(std::string_view key, const store::ValueRef& ref,
                        std::optional<std::chrono::milliseconds> ttl, uint64_t epoch,
                        Steady::time_point deadline, uint64_t replica_version) {
  const uint64_t ttl_ms = ttl ? static_cast<uint64_t>(std::max<int64_t>(ttl->count(), 1)) : 0;
  return with_retries("moving a value", deadline, [&](const State& st) {
    return put_once(st, key, ref, ttl_ms, epoch, deadline, replica_version);
  });
}

Status PeerSession::put_once(const State& st, std::string_view key, const store::ValueRef& ref,
                             uint64_t ttl_ms, uint64_t epoch, Steady::time_point deadline,
                             uint64_t replica_version) {
  const uint64_t session = st.hello.session_id();
  if (ref.size() <= st.hello.inline_threshold()) {
    v1::PutRequest req;
    req.set_session_id(session);
    req.set_key(std::string(key));
    req.set_value(reinterpret_cast<const char*>(ref.data()), ref.size());
    req.set_ttl_ms(ttl_ms);
    req.set_map_epoch(epoch);
    req.set_replica_version(replica_version);
    v1::PutReply reply;
    grpc::ClientContext ctx;
    prepare(ctx, deadline);
    grpc::Status s = stub_->Put(&ctx, req, &reply);
    return s.ok() ? Status() : rpc::from_grpc(s, "Put");
  }
  v1::PutBeginRequest begin;
  begin.set_session_id(session);
  begin.set_key(std::string(key));
  begin.set_value_len(ref.size());
  begin.set_ttl_ms(ttl_ms);
  begin.set_map_epoch(epoch);
  begin.set_replica_version(replica_version);
  v1::PutBeginReply reserved;
  {
    grpc::ClientContext ctx;
    prepare(ctx, deadline);
    grpc::Status s = stub_->PutBegin(&ctx, begin, &reserved);
    if (!s.ok()) return rpc::from_grpc(s, "PutBegin");
  }
  // Straight from our pool (registered memory) into the reservation in the peer's pool.
  Status wrote = transport::write_and_wait(*core_.transport, *core_.pool_region, ref.pool_offset(),
                                           st.pool, reserved.remote_offset(), ref.size(), deadline);
  grpc::ClientContext ctx;
  // The commit or abort gets a second of its own even when the write used up the deadline.
  prepare(ctx, std::max(deadline, Steady::now() + std::chrono::seconds(1)));
  if (!wrote.is_ok()) {
    v1::PutAbortRequest abort;
    abort.set_session_id(session);
    abort.set_reservation_id(reserved.reservation_id());
    v1::PutAbortReply reply;
    (void)stub_->PutAbort(&ctx, abort, &reply);  // else the reservation expires at the peer
    return wrote.with_context("writing the value into the peer's pool");
  }
  v1::PutCommitRequest commit;
  commit.set_session_id(session);
  commit.set_reservation_id(reserved.reservation_id());
  v1::PutCommitReply reply;
  grpc::Status s = stub_->PutCommit(&ctx, commit, &reply);
  return s.ok() ? Status() : rpc::from_grpc(s, "PutCommit");
}

Status PeerSession::erase(std::string_view key, uint64_t epoch, Steady::time_point deadline,
                          uint64_t replica_version) {
  return with_retries("deleting a moved key", deadline, [&](const State& st) {
    v1::DeleteRequest req;
    req.set_session_id(st.hello.session_id());
    req.set_key(std::string(key));
    req.set_map_epoch(epoch);
    req.set_replica_version(replica_version);
    v1::DeleteReply reply;
    grpc::ClientContext ctx;
    prepare(ctx, deadline);
    grpc::Status s = stub_->Delete(&ctx, req, &reply);
    // Already absent there is what we want.
    return s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND ? Status()
                                                                   : rpc::from_grpc(s, "Delete");
  });
}

Status PeerSession::drop_replica_slots(const std::vector<uint32_t>& slots, uint64_t epoch,
                                       Steady::time_point deadline) {
  return with_retries("dropping a replica's slots before a fill", deadline, [&](const State& st) {
    v1::DropReplicaSlotsRequest req;
    req.set_session_id(st.hello.session_id());
    req.set_map_epoch(epoch);
    for (uint32_t s : slots) req.add_slots(s);
    v1::DropReplicaSlotsReply reply;
    grpc::ClientContext ctx;
    prepare(ctx, deadline);
    grpc::Status s = stub_->DropReplicaSlots(&ctx, req, &reply);
    if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) return Status();
    return s.ok() ? Status() : rpc::from_grpc(s, "DropReplicaSlots");
  });
}

}  // namespace kvrdma::server
