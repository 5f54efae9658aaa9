#include "kvrdma/client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "client/batch.h"
#include "client/receive_buffer.h"
#include "common/logging.h"
#include "kv_cache.grpc.pb.h"
#include "kvrdma/version.h"
#include "memory/memory_pool.h"
#include "rpc/status_map.h"
#include "transport/transport.h"

namespace kvrdma {
namespace {

using Steady = std::chrono::steady_clock;

using client::HeldExtent;
using client::ReceiveBuffer;

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
  Result<ServerStats> stats();
  client::BatchChannel batch_channel();

  ClientOptions options;
  std::string target;
  std::shared_ptr<ReceiveBuffer> buffer;
  v1::HelloReply hello;

 private:
  Steady::time_point deadline() const {
    return Steady::now() + std::chrono::milliseconds(options.timeout_ms);
  }
  // A context whose gRPC deadline matches `d`.
  static void set_deadline(grpc::ClientContext& ctx, Steady::time_point d) {
    ctx.set_deadline(std::chrono::system_clock::now() + (d - Steady::now()));
  }
  Status call_failed(const grpc::Status& s, std::string_view what) const {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return rpc::from_grpc(s, fmt::format("{} at kv-server {}", what, target));
    }
    return rpc::from_grpc(s);
  }
  Status put_large(std::string_view key, std::string_view value, uint64_t ttl_ms);
  void keepalive_loop();

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KvCache::Stub> stub_;
  std::shared_ptr<transport::RemoteRegion> server_pool_;  // target of large PUT writes
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
  buffer = std::make_shared<ReceiveBuffer>();
  buffer->transport = std::move(*t);
  auto region = buffer->transport->allocate(o.buffer_bytes);
  if (!region) return region.status().with_context("cannot register the receive buffer (--buffer-mb)");
  buffer->region = std::move(*region);
  buffer->pool = std::make_unique<memory::MemoryPool>(buffer->region->data(), buffer->region->size());

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(1 << 30);
  args.SetMaxSendMessageSize(1 << 30);
  channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  stub_ = v1::KvCache::NewStub(channel_);
  auto d = deadline();
  if (!channel_->WaitForConnected(std::chrono::system_clock::now() + (d - Steady::now()))) {
    return Status(Code::kUnavailable,
                  fmt::format("cannot reach kv-server at {} within {} ms; is it running there? "
                              "(start it with kv-server --listen-addr {})",
                              target, o.timeout_ms, target));
  }
  v1::HelloRequest req;
  req.set_client_id(o.client_id);
  req.set_transport_kind(buffer->transport->kind());
  req.set_transport_address(buffer->transport->address());
  req.set_memory_descriptor(buffer->region->descriptor());
  req.set_region_size(buffer->region->size());
  req.set_version(version());
  grpc::ClientContext ctx;
  set_deadline(ctx, d);
  grpc::Status s = stub_->Hello(&ctx, req, &hello);
  if (!s.ok()) return call_failed(s, "Hello").with_context("Hello");
  buffer->region->seal();  // the server has mapped it; nobody else may
  auto peer = buffer->transport->connect(hello.transport_address());
  if (!peer) return peer.status().with_context("connecting to the server's transport");
  auto pool = (*peer)->attach(hello.memory_descriptor());
  if (!pool) return pool.status().with_context("attaching the server's pool");
  server_pool_ = std::move(*pool);
  keepalive_ = std::thread([this] { keepalive_loop(); });
  return Status();
}

Client::Impl::~Impl() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (keepalive_.joinable()) keepalive_.join();
  if (stub_ && hello.session_id() != 0) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    v1::GoodbyeRequest req;
    req.set_session_id(hello.session_id());
    v1::GoodbyeReply reply;
    (void)stub_->Goodbye(&ctx, req, &reply);
  }
}

void Client::Impl::keepalive_loop() {
  auto every = std::chrono::milliseconds(std::max<uint64_t>(hello.lease_ms() / 3, 50));
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, every, [this] { return stopping_; })) {
    lock.unlock();
    grpc::ClientContext ctx;
    set_deadline(ctx, deadline());
    v1::KeepAliveRequest req;
    req.set_session_id(hello.session_id());
    v1::KeepAliveReply reply;
    grpc::Status s = stub_->KeepAlive(&ctx, req, &reply);
    if (!s.ok()) KVRDMA_LOG_WARN("keepalive failed: {}", s.error_message());
    lock.lock();
  }
}

Result<ValueView> Client::Impl::get(std::string_view key) {
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  auto d = deadline();
  memory::MemoryPool& pool = *buffer->pool;
  // A first guess at the space the value needs; the reply says the real size when it is larger.
  memory::Allocation extent;
  uint64_t guess = std::min<uint64_t>(1 << 20, pool.size() / 4);
  if (guess > 0) {
    if (auto a = pool.allocate(guess)) extent = std::move(*a);
  }
  for (int attempt = 0; attempt < 4; ++attempt) {
    v1::GetRequest req;
    req.set_session_id(hello.session_id());
    req.set_key(std::string(key));
    req.set_dest_offset(extent.valid() ? extent.offset() : 0);
    req.set_dest_capacity(extent.valid() ? extent.capacity() : 0);
    v1::GetReply reply;
    grpc::ClientContext ctx;
    set_deadline(ctx, d);
    grpc::Status s = stub_->Get(&ctx, req, &reply);
    if (!s.ok()) return call_failed(s, "Get");
    if (reply.is_inline()) {
      auto bytes = std::make_shared<std::string>(std::move(*reply.mutable_value()));
      const auto* data = reinterpret_cast<const std::byte*>(bytes->data());
      size_t n = bytes->size();
      return ValueView(std::move(bytes), data, n, false);
    }
    if (reply.written()) {
      auto held = std::make_shared<HeldExtent>(HeldExtent{buffer, std::move(extent)});
      const std::byte* data = held->extent.data();
      return ValueView(std::move(held), data, reply.value_len(), true);
    }
    uint64_t need = reply.value_len();
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
  }
  return Status(Code::kUnavailable, "the value kept changing size while being read; try again");
}

Status Client::Impl::put(std::string_view key, std::string_view value, uint64_t ttl_ms) {
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  if (value.size() > hello.max_value_bytes()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("value of {} bytes exceeds the server's maximum of {} bytes; raise "
                              "--max-value-mb on the server or split the value",
                              value.size(), hello.max_value_bytes()));
  }
  if (value.size() > hello.inline_threshold()) return put_large(key, value, ttl_ms);
  v1::PutRequest req;
  req.set_session_id(hello.session_id());
  req.set_key(std::string(key));
  req.set_value(std::string(value));
  req.set_ttl_ms(ttl_ms);
  v1::PutReply reply;
  grpc::ClientContext ctx;
  set_deadline(ctx, deadline());
  grpc::Status s = stub_->Put(&ctx, req, &reply);
  return s.ok() ? Status() : call_failed(s, "Put");
}

Status Client::Impl::put_large(std::string_view key, std::string_view value, uint64_t ttl_ms) {
  auto d = deadline();
  v1::PutBeginRequest begin;
  begin.set_session_id(hello.session_id());
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
  memory::MemoryPool& pool = *buffer->pool;
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
    failed = transport::write_and_wait(*buffer->transport, *buffer->region, a->offset(),
                                       server_pool_, reserved.remote_offset() + pos, n, d);
    pos += n;
  }
  grpc::ClientContext ctx;
  set_deadline(ctx, failed.is_ok() ? d : deadline());
  if (!failed.is_ok()) {
    v1::PutAbortRequest abort;
    abort.set_session_id(hello.session_id());
    abort.set_reservation_id(reserved.reservation_id());
    v1::PutAbortReply reply;
    (void)stub_->PutAbort(&ctx, abort, &reply);
    return failed.with_context("writing the value into the server's pool");
  }
  v1::PutCommitRequest commit;
  commit.set_session_id(hello.session_id());
  commit.set_reservation_id(reserved.reservation_id());
  v1::PutCommitReply reply;
  grpc::Status s = stub_->PutCommit(&ctx, commit, &reply);
  return s.ok() ? Status() : call_failed(s, "PutCommit");
}

Status Client::Impl::erase(std::string_view key) {
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  v1::DeleteRequest req;
  req.set_session_id(hello.session_id());
  req.set_key(std::string(key));
  v1::DeleteReply reply;
  grpc::ClientContext ctx;
  set_deadline(ctx, deadline());
  grpc::Status s = stub_->Delete(&ctx, req, &reply);
  return s.ok() ? Status() : call_failed(s, "Delete");
}

client::BatchChannel Client::Impl::batch_channel() {
  client::BatchChannel ch;
  ch.stub = stub_.get();
  ch.session_id = hello.session_id();
  ch.inline_threshold = hello.inline_threshold();
  ch.max_value_bytes = hello.max_value_bytes();
  ch.buffer = buffer;
  ch.timeout = std::chrono::milliseconds(options.timeout_ms);
  ch.target = target;
  ch.put_one = [this](std::string_view k, std::string_view v, uint64_t ttl) {
    return put(k, v, ttl);
  };
  return ch;
}

Result<ServerStats> Client::Impl::stats() {
  v1::StatsRequest req;
  v1::StatsReply r;
  grpc::ClientContext ctx;
  set_deadline(ctx, deadline());
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
  return client::get_many(impl_->batch_channel(), keys);
}
std::vector<Status> Client::put_many(std::span<const KeyValue> items, uint64_t ttl_ms) {
  return client::put_many(impl_->batch_channel(), items, ttl_ms);
}
Result<ServerStats> Client::stats() { return impl_->stats(); }
uint64_t Client::session_id() const { return impl_->hello.session_id(); }
uint64_t Client::inline_threshold() const { return impl_->hello.inline_threshold(); }
uint64_t Client::buffer_size() const { return impl_->buffer->pool->size(); }
uint64_t Client::max_value_bytes() const { return impl_->hello.max_value_bytes(); }
std::string Client::transport_description() const {
  return impl_->buffer->transport->description();
}

}  // namespace kvrdma
