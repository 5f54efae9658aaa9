#include "client/node_session.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "client/call_versions.h"
#include "common/logging.h"
#include "kvrdma/version.h"
#include "memory/memory_pool.h"
#include "rpc/security.h"
#include "rpc/status_map.h"

namespace kvrdma::client {

// The typed detail (v1::SessionLost) is the marker; servers before it said so in text only.
bool session_gone(const Status& s) {
  if (s.code() != Code::kFailedPrecondition) return false;
  return rpc::is_session_lost(s) ||
         s.message().find("unknown or expired session") != std::string::npos;
}

std::string grpc_target(std::string_view addr) {
  for (std::string_view scheme : {"http://", "grpc://", "dns:///"}) {
    if (addr.substr(0, scheme.size()) == scheme) addr.remove_prefix(scheme.size());
  }
  return std::string(addr);
}

namespace {

Status status_of(const Status& s) { return s; }
template <class T>
Status status_of(const Result<T>& r) {
  return r ? Status() : r.status();
}

}  // namespace

Result<std::shared_ptr<NodeSession>> NodeSession::create(
    std::string_view address, const ClientOptions& options,
    std::shared_ptr<transport::Transport> transport, BufferSource* buffers) {
  std::string target = grpc_target(address);
  if (target.empty() || target.find(':') == std::string::npos) {
    return Status(Code::kInvalidArgument,
                  fmt::format("server address '{}' is not host:port (e.g. 127.0.0.1:50051)",
                              address));
  }
  auto creds = rpc::channel_credentials(options.security);
  if (!creds) return creds.status();
  std::shared_ptr<NodeSession> s(
      new NodeSession(std::move(target), options, std::move(transport), buffers));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(1 << 30);
  args.SetMaxSendMessageSize(1 << 30);
  // Retry a lost server often: gRPC's default backoff grows to 120 s, so a restarted server
  // would stay unreachable that long. Calls meanwhile fail at once with UNAVAILABLE.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // gRPC core reads this one as the time a connection attempt gets (TCP connect and the
  // server's first SETTINGS frame), not as a backoff. At 100 ms a server that was merely busy
  // (a loaded host, a node descheduled for a moment) lost the attempt: the channel went to
  // TRANSIENT_FAILURE, the first call on it failed with "timed out before receiving SETTINGS
  // frame", and connect() spent backoff rounds on every seed (~1 s for one CLI command). A
  // refused connection still fails at once; only a silent address costs up to this per attempt.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
  s->channel_ = grpc::CreateCustomChannel(s->target_, *creds, args);
  s->stub_ = v1::KvCache::NewStub(s->channel_);
  s->streams_ = std::make_unique<GetStreams>(s->stub_.get(), options.security.auth_token,
                                             options.get_streams);
  return s;
}

NodeSession::NodeSession(std::string target, const ClientOptions& options,
                         std::shared_ptr<transport::Transport> transport, BufferSource* buffers)
    : target_(std::move(target)),
      options_(options),
      transport_(std::move(transport)),
      buffers_(buffers) {}

NodeSession::~NodeSession() {
  streams_.reset();
  auto st = current();
  if (stub_ && st && st->hello.session_id() != 0) {
    grpc::ClientContext ctx;
    set_deadline(ctx, Steady::now() + std::chrono::seconds(1));
    v1::GoodbyeRequest req;
    req.set_session_id(st->hello.session_id());
    v1::GoodbyeReply reply;
    (void)stub_->Goodbye(&ctx, req, &reply);
  }
}

void NodeSession::set_deadline(grpc::ClientContext& ctx, Steady::time_point d) const {
  ctx.set_deadline(std::chrono::system_clock::now() + (d - Steady::now()));
  rpc::add_token(ctx, options_.security.auth_token);
}

Status NodeSession::call_failed(const grpc::Status& s, std::string_view what) const {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return rpc::from_grpc(s, fmt::format("{} at kv-server {}", what, target_));
  }
  return rpc::from_grpc(s);
}

bool NodeSession::wait_connected(Steady::time_point d, bool fail_fast) {
  const auto until = [&] { return std::chrono::system_clock::now() + (d - Steady::now()); };
  if (!fail_fast) return channel_->WaitForConnected(until());
  // Bounded by `d`: each turn waits for a state change, at most until then.
  for (;;) {
    grpc_connectivity_state state = channel_->GetState(true);
    if (state == GRPC_CHANNEL_READY) return true;
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) return false;
    if (!channel_->WaitForStateChange(state, until())) return false;
  }
}

Status NodeSession::unreachable() const {
  // A TLS mismatch looks the same as no server at all from here: name both.
  const auto& sec = options_.security;
  const bool tls = !sec.tls_ca.empty() || !sec.tls_cert.empty();
  return Status(Code::kUnavailable,
                fmt::format("cannot reach kv-server at {} within {} ms; is it running there? "
                            "(start it with kv-server --listen-addr {}){}",
                            target_, options_.timeout_ms, target_,
                            tls ? "; this client uses TLS: the server needs --tls-cert and "
                                  "--tls-key, its certificate must be signed by --tls-ca, and "
                                  "with mutual TLS this client needs --tls-cert and --tls-key"
                                : "; if the server uses TLS, give --tls-ca (and --tls-cert / "
                                  "--tls-key when it asks for client certificates)"));
}

bool NodeSession::channel_ready() const { return channel_->GetState(false) == GRPC_CHANNEL_READY; }

uint32_t NodeSession::node_id(uint32_t fallback) const {
  auto st = current();
  return st ? st->hello.node_id() : fallback;
}

Status NodeSession::ensure_open(Steady::time_point d) {
  if (current()) return Status();
  std::lock_guard lock(reopen_mu_);
  if (current()) return Status();  // another thread opened it
  auto st = open_session(nullptr, d);
  if (!st) return st.status();
  std::lock_guard slock(session_mu_);
  session_ = std::move(*st);
  return Status();
}

Result<std::shared_ptr<SessionState>> NodeSession::open_session(const ReceiveBuffer* before,
                                                                Steady::time_point d) {
  auto st = std::make_shared<SessionState>();
  auto buffer = buffers_->buffer_for_hello(before);
  if (!buffer) return buffer.status();
  st->buffer = std::move(*buffer);
  ReceiveBuffer& buf = *st->buffer;

  v1::HelloRequest req;
  req.set_client_id(options_.client_id);
  req.set_transport_kind(transport_->kind());
  req.set_transport_address(transport_->address());
  req.set_memory_descriptor(buf.region->descriptor());
  req.set_region_size(buf.region->size());
  req.set_version(version());
  std::unique_ptr<channel::ClientLink> offered;
  offer_channel(&req, &offered);
  grpc::ClientContext ctx;
  set_deadline(ctx, d);
  grpc::Status s = stub_->Hello(&ctx, req, &st->hello);
  if (!s.ok()) return call_failed(s, "Hello").with_context("Hello");
  open_channel(st.get(), std::move(offered));
  // Outside cluster mode the server has mapped it and nobody else may. In cluster mode nodes
  // met later map the same region; it is unlinked when the client goes.
  if (buffers_->seal_after_hello()) buf.region->seal();
  auto peer = transport_->connect(st->hello.transport_address());
  if (!peer) return peer.status().with_context("connecting to the server's transport");
  auto pool = (*peer)->attach(st->hello.memory_descriptor());
  if (!pool) return pool.status().with_context("attaching the server's pool");
  st->server_pool = std::move(*pool);
  return st;
}

Status NodeSession::reopen(const SessionState& seen, Steady::time_point d) {
  std::lock_guard lock(reopen_mu_);
  if (current()->generation != seen.generation) return Status();  // another thread did it
  auto st = open_session(seen.buffer.get(), d);
  if (!st) return st.status();
  (*st)->generation = seen.generation + 1;
  KVRDMA_LOG_INFO("kv-server {}: session {} replaced by session {}", target_,
                  seen.hello.session_id(), (*st)->hello.session_id());
  std::lock_guard slock(session_mu_);
  session_ = std::move(*st);
  return Status();
}

template <class Op>
auto NodeSession::with_session(Op op)
    -> decltype(op(std::declval<const SessionState&>(), Steady::now())) {
  auto d = deadline();
  auto st = current();  // one lock on the common path: the session is open
  if (!st) {
    if (Status s = ensure_open(d); !s.is_ok()) return s;
    st = current();
  }
  auto r = op(*st, d);
  if (!session_gone(status_of(r))) return r;
  if (Status s = reopen(*st, d); !s.is_ok()) {
    return s.with_context("the server lost this client's session; re-opening it failed");
  }
  return op(*current(), d);
}

void NodeSession::keepalive() {
  auto st = current();
  if (!st) return;
  auto d = deadline();
  grpc::ClientContext ctx;
  set_deadline(ctx, d);
  v1::KeepAliveRequest req;
  req.set_session_id(st->hello.session_id());
  v1::KeepAliveReply reply;
  grpc::Status s = stub_->KeepAlive(&ctx, req, &reply);
  if (s.ok()) return;
  KVRDMA_LOG_WARN("keepalive at {} failed: {}", target_, s.error_message());
  // The server restarted or dropped us: re-open now so the next call need not.
  if (session_gone(rpc::from_grpc(s))) {
    if (Status r = reopen(*st, d); !r.is_ok()) KVRDMA_LOG_WARN("re-open failed: {}", r.message());
  }
}

Result<v1::StatsReply> NodeSession::stats(uint64_t changed_since, std::chrono::milliseconds wait) {
  v1::StatsRequest req;
  req.set_changed_since(changed_since);
  req.set_wait_ms(static_cast<uint32_t>(wait.count()));
  v1::StatsReply r;
  grpc::ClientContext ctx;
  set_deadline(ctx, deadline() + wait);
  grpc::Status s = stub_->Stats(&ctx, req, &r);
  if (!s.ok()) return call_failed(s, "Stats");
  return r;
}

Result<v1::ClusterMap> NodeSession::cluster_map(Steady::time_point d) {
  v1::ClusterMapRequest req;
  v1::ClusterMapReply reply;
  grpc::ClientContext ctx;
  set_deadline(ctx, d);
  grpc::Status s = stub_->ClusterMap(&ctx, req, &reply);
  // A server older than cluster mode: outside it, as epoch 0 says.
  if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) return v1::ClusterMap();
  if (!s.ok()) return call_failed(s, "ClusterMap");
  return std::move(*reply.mutable_map());
}

Result<v1::LocateReply> NodeSession::locate(std::string_view key, uint64_t epoch) {
  return with_session([&](const SessionState&, Steady::time_point d) -> Result<v1::LocateReply> {
    v1::LocateRequest req;
    req.set_key(std::string(key));
    req.set_map_epoch(epoch);
    v1::LocateReply reply;
    grpc::ClientContext ctx;
    set_deadline(ctx, d);
    grpc::Status s = stub_->Locate(&ctx, req, &reply);
    if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      return Status(Code::kFailedPrecondition,
                    fmt::format("kv-server {} does not answer Locate (it is older than cluster "
                                "mode); upgrade it",
                                target_));
    }
    if (!s.ok()) return call_failed(s, "Locate");
    return reply;
  });
}

Result<ValueView> NodeSession::get(std::string_view key, uint64_t epoch) {
  return with_session(
      [&](const SessionState& st, Steady::time_point d) { return get_once(st, key, epoch, d); });
}

Status NodeSession::put(std::string_view key, std::string_view value, uint64_t ttl_ms,
                        uint64_t epoch) {
  return with_session([&](const SessionState& st, Steady::time_point d) {
    return put_once(st, key, value, ttl_ms, epoch, d);
  });
}

Status NodeSession::del(std::string_view key, uint64_t epoch) {
  return with_session([&](const SessionState& st, Steady::time_point d) -> Status {
    if (!call_versions().replicated) {  // replicas: as put_once
      auto r = channel_delete(st, key, epoch, d);
      if (r && !rpc::is_replicated_slot(*r)) return *r;
    }
    v1::DeleteRequest req;
    req.set_session_id(st.hello.session_id());
    req.set_key(std::string(key));
    req.set_map_epoch(epoch);
    v1::DeleteReply reply;
    grpc::ClientContext ctx;
    set_deadline(ctx, d);
    grpc::Status s = stub_->Delete(&ctx, req, &reply);
    if (s.ok()) call_versions().acked = reply.version();
    return s.ok() ? Status() : call_failed(s, "Delete");
  });
}

BatchChannel NodeSession::batch_channel(const SessionState& st, uint64_t epoch) const {
  BatchChannel ch;
  ch.stub = stub_.get();
  ch.session_id = st.hello.session_id();
  ch.map_epoch = epoch;
  ch.inline_threshold = st.hello.inline_threshold();
  ch.max_value_bytes = st.hello.max_value_bytes();
  ch.buffer = st.buffer;
  ch.timeout = std::chrono::milliseconds(options_.timeout_ms);
  ch.target = target_;
  ch.auth_token = options_.security.auth_token;
  ch.streams = streams_.get();
  return ch;
}

// A batch whose items the server refused because it lost the session (it restarted, or the
// lease ran out) is re-run once, for those items only, on a re-opened session: the refusal
// proves they were not executed.
template <class Item, class R, class Run>
void NodeSession::retry_lost_session(std::span<const Item> items, std::vector<R>& results,
                                     const SessionState& seen, Run run) {
  std::vector<size_t> lost;
  for (size_t i = 0; i < results.size(); ++i) {
    if (session_gone(status_of(results[i]))) lost.push_back(i);
  }
  if (lost.empty()) return;
  if (Status s = reopen(seen, deadline()); !s.is_ok()) {
    Status failed = s.with_context("the server lost this client's session; re-opening it failed");
    for (size_t i : lost) results[i] = failed;
    return;
  }
  std::vector<Item> again;
  again.reserve(lost.size());
  for (size_t i : lost) again.push_back(items[i]);
  auto redone = run(*current(), std::span<const Item>(again));
  for (size_t j = 0; j < lost.size(); ++j) results[lost[j]] = std::move(redone[j]);
}

std::vector<Result<ValueView>> NodeSession::get_many(std::span<const std::string_view> keys,
                                                     uint64_t epoch) {
  if (Status s = ensure_open(deadline()); !s.is_ok()) {
    std::vector<Result<ValueView>> failed;
    failed.reserve(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) failed.emplace_back(s);
    return failed;
  }
  auto st = current();
  auto run = [&](const SessionState& at, std::span<const std::string_view> k) {
    // Batches take the channel wherever there is one: over tcp (64 B x 16 keys, interleaved
    // A/B, docs/channel-fabric.md) 1.5-1.9x gRPC's GetMany at 16 in flight, even at 1.
    // Replicas: the channel carries no min_version; a batch that sends them goes over gRPC.
    if (at.channel && at.channel->usable() && call_versions().slot_versions == nullptr) {
      return channel_get_many(at, k, epoch, deadline());
    }
    return client::get_many(batch_channel(at, epoch), k);
  };
  auto results = run(*st, keys);
  retry_lost_session(keys, results, *st, run);
  return results;
}

std::vector<Status> NodeSession::put_many(
    std::span<const KeyValue> items, uint64_t ttl_ms, uint64_t epoch,
    std::function<Status(std::string_view, std::string_view, uint64_t)> put_one) {
  if (Status s = ensure_open(deadline()); !s.is_ok()) return std::vector<Status>(items.size(), s);
  auto st = current();
  auto run = [&](const SessionState& at, std::span<const KeyValue> i) {
    BatchChannel ch = batch_channel(at, epoch);
    ch.put_one = put_one;
    return client::put_many(ch, i, ttl_ms);
  };
  auto results = run(*st, items);
  retry_lost_session(items, results, *st, run);
  return results;
}

}  // namespace kvrdma::client
