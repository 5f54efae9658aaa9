#include "kvrdma/client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <iterator>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "client/batch.h"
#include "client/get_stream.h"
#include "client/receive_buffer.h"
#include "common/logging.h"
#include "kv_cache.grpc.pb.h"
#include "kvrdma/version.h"
#include "memory/memory_pool.h"
#include "rpc/security.h"
#include "rpc/status_map.h"
#include "transport/transport.h"

namespace kvrdma {
namespace {

using Steady = std::chrono::steady_clock;

using client::HeldExtent;
using client::ReceiveBuffer;

// One session with the server, replaced whole when the client re-opens it after the server lost
// it (restart, lease expiry). Calls work on a snapshot, so a re-open never changes the session
// under a call in flight; the old receive buffer lives on while views of it do.
struct SessionState {
  v1::HelloReply hello;
  std::shared_ptr<ReceiveBuffer> buffer;
  std::shared_ptr<transport::RemoteRegion> server_pool;  // target of large PUT writes
  uint64_t generation = 0;                               // 0 for the first session, then +1
};

// True when the server answered that it does not know the session (it restarted or the lease
// ran out): the only failure that proves the request was not executed and a new Hello helps.
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

}  // namespace

void ValueView::release() {
  owner_.reset();
  data_ = nullptr;
  size_ = 0;
  in_buffer_ = false;
}

class Client::Impl {
 public:
  ~Impl();
  Status connect(const ClientOptions& options);

  Result<ValueView> get(std::string_view key);
  Status put(std::string_view key, std::string_view value, uint64_t ttl_ms);
  Status erase(std::string_view key);
  Result<ServerStats> stats(uint64_t changed_since, std::chrono::milliseconds wait);
  std::vector<Result<ValueView>> get_many(std::span<const std::string_view> keys);
  std::vector<Status> put_many(std::span<const KeyValue> items, uint64_t ttl_ms);

  // The current session (never null after connect succeeded).
  std::shared_ptr<const SessionState> current() const {
    std::lock_guard lock(session_mu_);
    return session_;
  }

  ClientOptions options;
  std::string target;

 private:
  Steady::time_point deadline() const {
    return Steady::now() + std::chrono::milliseconds(options.timeout_ms);
  }
  // A context whose gRPC deadline matches `d`.
  // Every call goes through here: its deadline, and the auth token.
  void set_deadline(grpc::ClientContext& ctx, Steady::time_point d) const {
    ctx.set_deadline(std::chrono::system_clock::now() + (d - Steady::now()));
    rpc::add_token(ctx, options.security.auth_token);
  }
  Status call_failed(const grpc::Status& s, std::string_view what) const {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return rpc::from_grpc(s, fmt::format("{} at kv-server {}", what, target));
    }
    return rpc::from_grpc(s);
  }
  Result<ValueView> get_once(const SessionState& st, std::string_view key, Steady::time_point d);
  Status put_once(const SessionState& st, std::string_view key, std::string_view value,
                  uint64_t ttl_ms, Steady::time_point d);
  Status put_large(const SessionState& st, std::string_view key, std::string_view value,
                   uint64_t ttl_ms, Steady::time_point d);
  Status erase_once(const SessionState& st, std::string_view key, Steady::time_point d);
  // Registers a fresh receive buffer and opens a session with it (Hello, transport connect,
  // attach the server's pool). A fresh buffer each time: the mock unlinks a buffer's shared
  // memory once a server mapped it, so an old one cannot be announced to a new server.
  Result<std::shared_ptr<SessionState>> open_session(Steady::time_point d);
  // Replaces the session `seen` by a new one, unless another thread already did.
  Status reopen(const SessionState& seen, Steady::time_point d);
  // Runs `op` on the current session; when the server proves the session gone, re-opens it and
  // runs `op` once more on the new one, within the same deadline. Only for steps that are safe
  // to repeat (the first attempt was rejected before doing anything).
  template <class Op>
  auto with_session(Op op) -> decltype(op(std::declval<const SessionState&>(), Steady::now())) {
    auto d = deadline();
    auto st = current();
    auto r = op(*st, d);
    Status first = status_of(r);
    if (!session_gone(first)) return r;
    if (Status s = reopen(*st, d); !s.is_ok()) {
      return s.with_context("the server lost this client's session; re-opening it failed");
    }
    return op(*current(), d);
  }
  static Status status_of(const Status& s) { return s; }
  template <class T>
  static Status status_of(const Result<T>& r) { return r ? Status() : r.status(); }
  void keepalive_loop();
  client::BatchChannel batch_channel(const SessionState& st);
  template <class Item, class R, class Run>
  void retry_lost_session(std::span<const Item> items, std::vector<R>& results,
                          const SessionState& seen, Run run);

  // Once more than 1/kRetiredShare of the session's receive buffer is retired (extents of
  // failed GETs, see ReceiveBuffer::retire), re-opens the session with a fresh buffer, so a
  // run of failures cannot use the buffer up. Views of the old buffer stay valid. Not while
  // kMaxHeldBuffers replaced buffers are still held (below): a run of failures then waits for
  // space in the current buffer instead of mapping buffer after buffer. The old session gets no
  // Goodbye: calls other threads still have in flight on it finish there, and it expires with
  // its lease once no keepalive names it.
  static constexpr uint64_t kRetiredShare = 4;
  static constexpr size_t kMaxHeldBuffers = 2;
  void renew_buffer_if_retired(const SessionState& st);

  // A buffer with retired extents stays mapped and registered after its session is replaced,
  // until no late write can still reach it: a server gives up a GET's write at the request's
  // deadline (at most timeout_ms), but a write already handed to the provider cannot be
  // recalled, so the margin is generous. Freeing it earlier let such a write land in unmapped
  // memory (a crash in the shm provider's copy) or in whatever was mapped there next.
  std::chrono::milliseconds held_buffer_grace() const {
    return std::chrono::milliseconds(options.timeout_ms) + std::chrono::seconds(60);
  }
  void hold_if_retired(std::shared_ptr<ReceiveBuffer> buffer);
  // Drops held buffers whose grace has passed; how many are left.
  size_t release_held_buffers();

  // One GET round trip: on a stream when one is free, else a unary call.
  Status get_round_trip(const v1::GetRequest& req, v1::GetReply* reply, Steady::time_point d);

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KvCache::Stub> stub_;
  std::unique_ptr<client::GetStreams> streams_;  // uses stub_
  // Size of the last value that came by transport write, 0 when the last one came inline: the
  // guess for the next GET (see get_once).
  std::atomic<uint64_t> large_hint_{0};
  std::shared_ptr<transport::Transport> transport_;
  mutable std::mutex session_mu_;
  std::shared_ptr<const SessionState> session_;  // guarded by session_mu_
  std::mutex reopen_mu_;                         // one re-open at a time
  struct HeldBuffer {
    std::shared_ptr<ReceiveBuffer> buffer;
    Steady::time_point until;
  };
  std::mutex held_mu_;
  std::vector<HeldBuffer> held_buffers_;  // guarded by held_mu_; after transport_: freed first
  std::thread keepalive_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
};

Status Client::Impl::connect(const ClientOptions& o) {
  options = o;
  log::set_level(o.log_level);
  target = grpc_target(o.server_addr);
  if (target.empty() || target.find(':') == std::string::npos) {
    return Status(Code::kInvalidArgument,
                  fmt::format("server address '{}' is not host:port (e.g. 127.0.0.1:50051)",
                              o.server_addr));
  }
  auto t = transport::make_transport(o.transport);
  if (!t) return t.status();
  transport_ = std::move(*t);

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(1 << 30);
  args.SetMaxSendMessageSize(1 << 30);
  // Retry a lost server often: gRPC's default backoff grows to 120 s, so a restarted server
  // would stay unreachable that long. Calls meanwhile fail at once with UNAVAILABLE.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  auto creds = rpc::channel_credentials(o.security);
  if (!creds) return creds.status();
  channel_ = grpc::CreateCustomChannel(target, *creds, args);
  stub_ = v1::KvCache::NewStub(channel_);
  streams_ = std::make_unique<client::GetStreams>(stub_.get(), o.security.auth_token,
                                                  o.get_streams);
  auto d = deadline();
  if (!channel_->WaitForConnected(std::chrono::system_clock::now() + (d - Steady::now()))) {
    // A TLS mismatch looks the same as no server at all from here: name both.
    const bool tls = !o.security.tls_ca.empty() || !o.security.tls_cert.empty();
    return Status(Code::kUnavailable,
                  fmt::format("cannot reach kv-server at {} within {} ms; is it running there? "
                              "(start it with kv-server --listen-addr {}){}",
                              target, o.timeout_ms, target,
                              tls ? "; this client uses TLS: the server needs --tls-cert and "
                                    "--tls-key, its certificate must be signed by --tls-ca, and "
                                    "with mutual TLS this client needs --tls-cert and --tls-key"
                                  : "; if the server uses TLS, give --tls-ca (and --tls-cert / "
                                    "--tls-key when it asks for client certificates)"));
  }
  auto st = open_session(d);
  if (!st) return st.status();
  session_ = std::move(*st);
  keepalive_ = std::thread([this] { keepalive_loop(); });
  return Status();
}

Result<std::shared_ptr<SessionState>> Client::Impl::open_session(Steady::time_point d) {
  auto st = std::make_shared<SessionState>();
  st->buffer = std::make_shared<ReceiveBuffer>();
  ReceiveBuffer& buf = *st->buffer;
  buf.transport = transport_;
  auto region = transport_->allocate(options.buffer_bytes);
  if (!region) return region.status().with_context("cannot register the receive buffer (--buffer-mb)");
  buf.region = std::move(*region);
  buf.pool = std::make_unique<memory::MemoryPool>(buf.region->data(), buf.region->size());

  v1::HelloRequest req;
  req.set_client_id(options.client_id);
  req.set_transport_kind(transport_->kind());
  req.set_transport_address(transport_->address());
  req.set_memory_descriptor(buf.region->descriptor());
  req.set_region_size(buf.region->size());
  req.set_version(version());
  grpc::ClientContext ctx;
  set_deadline(ctx, d);
  grpc::Status s = stub_->Hello(&ctx, req, &st->hello);
  if (!s.ok()) return call_failed(s, "Hello").with_context("Hello");
  buf.region->seal();  // the server has mapped it; nobody else may
  auto peer = transport_->connect(st->hello.transport_address());
  if (!peer) return peer.status().with_context("connecting to the server's transport");
  auto pool = (*peer)->attach(st->hello.memory_descriptor());
  if (!pool) return pool.status().with_context("attaching the server's pool");
  st->server_pool = std::move(*pool);
  return st;
}

Status Client::Impl::reopen(const SessionState& seen, Steady::time_point d) {
  std::lock_guard lock(reopen_mu_);
  if (current()->generation != seen.generation) return Status();  // another thread did it
  auto st = open_session(d);
  if (!st) return st.status();
  (*st)->generation = seen.generation + 1;
  KVRDMA_LOG_INFO("kv-server {} lost session {}; re-opened as session {}", target,
                  seen.hello.session_id(), (*st)->hello.session_id());
  std::shared_ptr<const SessionState> old;
  {
    std::lock_guard slock(session_mu_);
    old = std::exchange(session_, std::move(*st));
  }
  hold_if_retired(old->buffer);
  return Status();
}

void Client::Impl::hold_if_retired(std::shared_ptr<ReceiveBuffer> buffer) {
  if (buffer->retired_bytes() == 0) return;
  std::lock_guard lock(held_mu_);
  held_buffers_.push_back(HeldBuffer{std::move(buffer), Steady::now() + held_buffer_grace()});
}

size_t Client::Impl::release_held_buffers() {
  std::vector<HeldBuffer> expired;  // freed outside the lock
  std::lock_guard lock(held_mu_);
  const auto now = Steady::now();
  auto keep = std::partition(held_buffers_.begin(), held_buffers_.end(),
                             [now](const HeldBuffer& h) { return h.until > now; });
  std::move(keep, held_buffers_.end(), std::back_inserter(expired));
  held_buffers_.erase(keep, held_buffers_.end());
  return held_buffers_.size();
}

Client::Impl::~Impl() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (keepalive_.joinable()) keepalive_.join();
  streams_.reset();
  auto st = session_;  // no other thread is left
  if (stub_ && st && st->hello.session_id() != 0) {
    grpc::ClientContext ctx;
    set_deadline(ctx, Steady::now() + std::chrono::seconds(1));
    v1::GoodbyeRequest req;
    req.set_session_id(st->hello.session_id());
    v1::GoodbyeReply reply;
    (void)stub_->Goodbye(&ctx, req, &reply);
  }
}

void Client::Impl::keepalive_loop() {
  auto every = [this] {
    return std::chrono::milliseconds(std::max<uint64_t>(current()->hello.lease_ms() / 3, 50));
  };
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, every(), [this] { return stopping_; })) {
    lock.unlock();
    release_held_buffers();
    // Off the GET path: a buffer retired during an outage (renewal waits for a READY channel) is
    // renewed here once the server is back, even if no GET fails again.
    renew_buffer_if_retired(*current());
    auto st = current();
    auto d = deadline();
    grpc::ClientContext ctx;
    set_deadline(ctx, d);
    v1::KeepAliveRequest req;
    req.set_session_id(st->hello.session_id());
    v1::KeepAliveReply reply;
    grpc::Status s = stub_->KeepAlive(&ctx, req, &reply);
    if (!s.ok()) {
      Status failed = rpc::from_grpc(s);
      KVRDMA_LOG_WARN("keepalive failed: {}", s.error_message());
      // The server restarted or dropped us: re-open now so the next call need not.
      if (session_gone(failed)) {
        if (Status r = reopen(*st, d); !r.is_ok()) KVRDMA_LOG_WARN("re-open failed: {}", r.message());
      }
    }
    lock.lock();
  }
}

Result<ValueView> Client::Impl::get(std::string_view key) {
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  auto r = with_session([&](const SessionState& st, Steady::time_point d) {
    return get_once(st, key, d);
  });
  if (!r) renew_buffer_if_retired(*current());
  return r;
}

void Client::Impl::renew_buffer_if_retired(const SessionState& st) {
  const uint64_t retired = st.buffer->retired_bytes();
  if (retired <= st.buffer->pool->size() / kRetiredShare) return;
  // Not while the server is unreachable: each try would map a buffer and fail its Hello.
  if (channel_->GetState(false) != GRPC_CHANNEL_READY) return;
  if (release_held_buffers() >= kMaxHeldBuffers) return;
  KVRDMA_LOG_WARN("{} bytes of the receive buffer are retired (GETs that failed while the "
                  "server's write into them could still land); opening a new session with a "
                  "fresh buffer", retired);
  if (Status s = reopen(st, deadline()); !s.is_ok()) {
    KVRDMA_LOG_WARN("re-open failed: {}", s.message());
  }
}

Status Client::Impl::get_round_trip(const v1::GetRequest& req, v1::GetReply* reply,
                                    Steady::time_point d) {
  if (auto r = client::GetStreams::settle(streams_->get(req, reply, d), "Get", target)) return *r;
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
Result<ValueView> Client::Impl::get_once(const SessionState& st, std::string_view key,
                                         Steady::time_point d) {
  const std::shared_ptr<ReceiveBuffer>& buffer = st.buffer;
  memory::MemoryPool& pool = *buffer->pool;
  memory::Allocation extent;
  transport::WriteExpectation incoming;
  if (uint64_t guess = std::min<uint64_t>(large_hint_.load(std::memory_order_relaxed),
                                          pool.size() / 4)) {
    if (auto a = pool.allocate(guess)) extent = std::move(*a);
    // The server may write the value into our buffer from the moment the request leaves.
    if (extent.valid()) incoming = buffer->transport->expect_writes();
  }
  v1::GetRequest req;
  req.set_session_id(st.hello.session_id());
  req.set_key(std::string(key));
  for (int attempt = 0; attempt < 4; ++attempt) {
    req.set_dest_offset(extent.valid() ? extent.offset() : 0);
    req.set_dest_capacity(extent.valid() ? extent.capacity() : 0);
    v1::GetReply reply;
    if (Status s = get_round_trip(req, &reply, d); !s.is_ok()) {
      if (extent.valid() && client::write_may_still_land(s)) buffer->retire(std::move(extent));
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
                                "--buffer-mb to at least {}", need, pool.size(),
                                (need + (1 << 20) - 1) >> 20));
    }
    auto a = pool.allocate_until(need, d);  // waits for views to give space back
    if (!a) return a.status().with_context(fmt::format("waiting for {} bytes of receive buffer", need));
    extent = std::move(*a);
    if (!incoming) incoming = buffer->transport->expect_writes();
  }
  return Status(Code::kUnavailable, "the value kept changing size while being read; try again");
}

Status Client::Impl::put(std::string_view key, std::string_view value, uint64_t ttl_ms) {
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  return with_session([&](const SessionState& st, Steady::time_point d) {
    return put_once(st, key, value, ttl_ms, d);
  });
}

Status Client::Impl::put_once(const SessionState& st, std::string_view key,
                              std::string_view value, uint64_t ttl_ms, Steady::time_point d) {
  const v1::HelloReply& hello = st.hello;
  if (value.size() > hello.max_value_bytes()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("value of {} bytes exceeds the server's maximum of {} bytes; raise "
                              "--max-value-mb on the server or split the value",
                              value.size(), hello.max_value_bytes()));
  }
  if (value.size() > hello.inline_threshold()) return put_large(st, key, value, ttl_ms, d);
  v1::PutRequest req;
  req.set_session_id(hello.session_id());
  req.set_key(std::string(key));
  req.set_value(std::string(value));
  req.set_ttl_ms(ttl_ms);
  v1::PutReply reply;
  grpc::ClientContext ctx;
  set_deadline(ctx, d);
  grpc::Status s = stub_->Put(&ctx, req, &reply);
  return s.ok() ? Status() : call_failed(s, "Put");
}

// Two-phase PUT. Only a rejected PutBegin reports the session gone (nothing reserved, nothing
// written, so with_session may repeat it); a failure after it is never repeated: the PUT fails,
// and a lost session is re-opened for the next call.
Status Client::Impl::put_large(const SessionState& st, std::string_view key,
                               std::string_view value, uint64_t ttl_ms, Steady::time_point d) {
  v1::PutBeginRequest begin;
  begin.set_session_id(st.hello.session_id());
  begin.set_key(std::string(key));
  begin.set_value_len(value.size());
  begin.set_ttl_ms(ttl_ms);
  v1::PutBeginReply reserved;
  {
    grpc::ClientContext ctx;
    set_deadline(ctx, d);
    grpc::Status s = stub_->PutBegin(&ctx, begin, &reserved);
    if (!s.ok()) return call_failed(s, "PutBegin");
  }
  // The source of a transport write must be registered memory: stage through the receive
  // buffer, chunk by chunk, so a value larger than the buffer still goes.
  memory::MemoryPool& pool = *st.buffer->pool;
  uint64_t chunk = std::min<uint64_t>(std::max<uint64_t>(pool.size() / 4, 1 << 20), pool.size());
  Status failed;
  for (uint64_t pos = 0; pos < value.size() && failed.is_ok();) {
    uint64_t n = std::min<uint64_t>(chunk, value.size() - pos);
    auto a = pool.allocate_until(n, d);
    if (!a) {
      failed = a.status();
      break;
    }
    std::memcpy(a->data(), value.data() + pos, n);
    failed = transport::write_and_wait(*transport_, *st.buffer->region, a->offset(),
                                       st.server_pool, reserved.remote_offset() + pos, n, d);
    pos += n;
  }
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
    if (s.ok()) return Status();
    result = call_failed(s, "PutCommit");
  }
  if (session_gone(result)) {
    (void)reopen(st, deadline());
    return Status(Code::kUnavailable,
                  fmt::format("kv-server {} lost the session during a two-phase PUT; the value "
                              "was not stored; put it again", target));
  }
  return result;
}

Status Client::Impl::erase(std::string_view key) {
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  return with_session([&](const SessionState& st, Steady::time_point d) {
    return erase_once(st, key, d);
  });
}

Status Client::Impl::erase_once(const SessionState& st, std::string_view key,
                                Steady::time_point d) {
  v1::DeleteRequest req;
  req.set_session_id(st.hello.session_id());
  req.set_key(std::string(key));
  v1::DeleteReply reply;
  grpc::ClientContext ctx;
  set_deadline(ctx, d);
  grpc::Status s = stub_->Delete(&ctx, req, &reply);
  return s.ok() ? Status() : call_failed(s, "Delete");
}

client::BatchChannel Client::Impl::batch_channel(const SessionState& st) {
  client::BatchChannel ch;
  ch.stub = stub_.get();
  ch.session_id = st.hello.session_id();
  ch.inline_threshold = st.hello.inline_threshold();
  ch.max_value_bytes = st.hello.max_value_bytes();
  ch.buffer = st.buffer;
  ch.timeout = std::chrono::milliseconds(options.timeout_ms);
  ch.target = target;
  ch.auth_token = options.security.auth_token;
  ch.streams = streams_.get();
  ch.put_one = [this](std::string_view k, std::string_view v, uint64_t ttl) {
    return put(k, v, ttl);
  };
  return ch;
}

// A batch whose items the server refused because it lost the session (it restarted, or the
// lease ran out) is re-run once, for those items only, on a re-opened session: the refusal
// proves they were not executed.
template <class Item, class R, class Run>
void Client::Impl::retry_lost_session(std::span<const Item> items, std::vector<R>& results,
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
  auto redone = run(batch_channel(*current()), std::span<const Item>(again));
  for (size_t j = 0; j < lost.size(); ++j) results[lost[j]] = std::move(redone[j]);
}

std::vector<Result<ValueView>> Client::Impl::get_many(std::span<const std::string_view> keys) {
  auto st = current();
  auto run = [](const client::BatchChannel& ch, std::span<const std::string_view> k) {
    return client::get_many(ch, k);
  };
  auto results = run(batch_channel(*st), keys);
  retry_lost_session(keys, results, *st, run);
  renew_buffer_if_retired(*current());
  return results;
}

std::vector<Status> Client::Impl::put_many(std::span<const KeyValue> items, uint64_t ttl_ms) {
  auto st = current();
  auto run = [ttl_ms](const client::BatchChannel& ch, std::span<const KeyValue> i) {
    return client::put_many(ch, i, ttl_ms);
  };
  auto results = run(batch_channel(*st), items);
  retry_lost_session(items, results, *st, run);
  return results;
}

Result<ServerStats> Client::Impl::stats(uint64_t changed_since, std::chrono::milliseconds wait) {
  wait = std::clamp(wait, std::chrono::milliseconds(0), std::chrono::milliseconds(10000));
  v1::StatsRequest req;
  req.set_changed_since(changed_since);
  req.set_wait_ms(static_cast<uint32_t>(wait.count()));
  v1::StatsReply r;
  grpc::ClientContext ctx;
  set_deadline(ctx, deadline() + wait);
  grpc::Status s = stub_->Stats(&ctx, req, &r);
  if (!s.ok()) return call_failed(s, "Stats");
  ServerStats o;
  o.node_id = r.node_id();
  o.transport = r.transport();
  o.keys = r.keys();
  o.sessions = r.sessions();
  o.reservations = r.reservations();
  o.pinned = r.pinned();
  o.pool_bytes = r.pool_bytes();
  o.pool_used_bytes = r.pool_used_bytes();
  o.pool_free_bytes = r.pool_free_bytes();
  o.pool_largest_free_bytes = r.pool_largest_free_bytes();
  o.value_bytes = r.value_bytes();
  o.gets = r.gets();
  o.get_hits = r.get_hits();
  o.get_misses = r.get_misses();
  o.puts = r.puts();
  o.deletes = r.deletes();
  o.evictions = r.evictions();
  o.expirations = r.expirations();
  o.bytes_inline_sent = r.bytes_inline_sent();
  o.bytes_transport_written = r.bytes_transport_written();
  o.bytes_inline_received = r.bytes_inline_received();
  o.bytes_put_committed = r.bytes_put_committed();
  o.reservations_expired = r.reservations_expired();
  o.sessions_expired = r.sessions_expired();
  o.version = r.version();
  return o;
}

Result<std::unique_ptr<Client>> Client::connect(const ClientOptions& options) {
  auto impl = std::make_unique<Impl>();
  Status s = impl->connect(options);
  if (!s.is_ok()) return s;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<ValueView> Client::get(std::string_view key) { return impl_->get(key); }
Result<std::string> Client::get_copy(std::string_view key) {
  auto v = impl_->get(key);
  if (!v) return v.status();
  return std::string(v->str());
}
Status Client::put(std::string_view key, std::string_view value, uint64_t ttl_ms) {
  return impl_->put(key, value, ttl_ms);
}
Status Client::erase(std::string_view key) { return impl_->erase(key); }
std::vector<Result<ValueView>> Client::get_many(std::span<const std::string_view> keys) {
  return impl_->get_many(keys);
}
std::vector<Status> Client::put_many(std::span<const KeyValue> items, uint64_t ttl_ms) {
  return impl_->put_many(items, ttl_ms);
}
Result<ServerStats> Client::stats() { return impl_->stats(0, std::chrono::milliseconds(0)); }
Result<ServerStats> Client::stats_after(uint64_t version, std::chrono::milliseconds max_wait) {
  return impl_->stats(version, max_wait);
}
uint64_t Client::session_id() const { return impl_->current()->hello.session_id(); }
uint64_t Client::inline_threshold() const { return impl_->current()->hello.inline_threshold(); }
uint64_t Client::buffer_size() const { return impl_->current()->buffer->pool->size(); }
uint64_t Client::max_value_bytes() const { return impl_->current()->hello.max_value_bytes(); }
std::string Client::transport_description() const {
  return impl_->current()->buffer->transport->description();
}

}  // namespace kvrdma
