#include "kvrdma/client.h"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <thread>
#include <utility>

#include "client/client_impl.h"
#include "common/logging.h"
#include "memory/memory_pool.h"
#include "transport/transport.h"

namespace kvrdma {

using client::NodeSession;
using client::ReceiveBuffer;

void ValueView::release() {
  owner_.reset();
  data_ = nullptr;
  size_ = 0;
  in_buffer_ = false;
}

namespace {

Result<cluster::SlotMap> map_of(Result<v1::ClusterMap> reply) {
  if (!reply) return reply.status().with_context("ClusterMap");
  return cluster::from_proto(*reply);
}

}  // namespace

Status Client::Impl::connect(const ClientOptions& o) {
  options_ = o;
  // This client's level, on the threads it runs (connect's and the keepalive thread): never the
  // process's, so a Client cannot change an embedded Server's level.
  logger_->set_level(o.log_level);
  logger_->set_format(o.log_format);
  logger_->set_labels(log::Labels{.node = {}, .client = o.client_id});
  log::Scope log_scope(logger_.get());
  auto list = client::parse_addresses(o.server_addr);
  if (!list) return list.status();
  seeds_ = std::move(*list);
  auto t = transport::make_transport(o.transport);
  if (!t) return t.status();
  transport_ = std::move(*t);

  std::vector<std::shared_ptr<NodeSession>> dialed;
  for (const std::string& a : seeds_) {
    auto s = NodeSession::create(a, options_, transport_, this);
    if (!s) return s.status();
    dialed.push_back(std::move(*s));
  }
  // One address: wait for it the whole timeout (a server may still be starting). Several: the
  // first that answers; a refused connection moves on to the next at once, and every round
  // gives each a short wait, so a dead or silent first node costs little. The short wait is
  // ours, not the connection attempt's: an attempt left behind goes on (a connection gets 1 s,
  // see NodeSession::create) and the next round finds it connected. A node that answers but has
  // no map to hand out (a cluster still forming, a node joining or fenced: UNAVAILABLE) is asked
  // again, after the others, until the deadline.
  const auto d = deadline();
  Result<cluster::SlotMap> map = Status(Code::kUnavailable, "no kv-server answered");
  bool answered = false;  // some node answered ClusterMap, with no map yet
  for (int round = 0; !home_ && Steady::now() < d && round < 100000; ++round) {
    for (auto& s : dialed) {
      auto until =
          dialed.size() == 1 ? d : std::min(d, Steady::now() + std::chrono::milliseconds(250));
      if (!s->wait_connected(until, dialed.size() > 1 && round == 0)) continue;
      map = map_of(s->cluster_map(d));
      if (map) {
        home_ = s;
        break;
      }
      if (map.status().code() != Code::kUnavailable) return map.status();
      answered = true;
    }
    if (!home_ && answered) {
      // Every reachable node is without a map: a short pause before asking again (bounded by
      // the deadline), not a spin.
      std::this_thread::sleep_for(
          std::min<Steady::duration>(std::chrono::milliseconds(50), d - Steady::now()));
    }
  }
  if (!home_) {
    if (answered) return map.status();
    if (dialed.size() == 1) return dialed[0]->unreachable();
    return Status(Code::kUnavailable,
                  fmt::format("cannot reach any of the kv-servers {} within {} ms; is one of them "
                              "running? (check --server-addr; with TLS give --tls-ca)",
                              o.server_addr, o.timeout_ms));
  }
  cluster_ = map->epoch > 0 || !map->cluster.empty();
  if (cluster_) acked_ = std::vector<std::atomic<uint64_t>>(cluster::kSlots);
  auto buffer = new_buffer();
  if (!buffer) return buffer.status();
  buffer_ = std::move(*buffer);
  if (Status s = home_->ensure_open(d); !s.is_ok()) return s;
  {
    std::unique_lock lock(sessions_mu_);
    by_address_[home_->address()] = home_;
    const uint32_t id = home_->node_id(cluster::kNoNode);
    const cluster::NodeInfo* in_map = map->node(id);
    by_id_[id] = SessionRef{in_map ? in_map->address : home_->address(), home_};
  }
  map_ = std::make_shared<const cluster::SlotMap>(std::move(*map));
  keepalive_ = std::thread([this] {
    log::Scope keepalive_scope(logger_.get());
    keepalive_loop();
  });
  return Status();
}

Client::Impl::~Impl() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (keepalive_.joinable()) keepalive_.join();
  // Sessions say Goodbye as they go (no other thread is left).
  home_.reset();
  by_id_.clear();
  by_address_.clear();
}

Result<std::shared_ptr<ReceiveBuffer>> Client::Impl::new_buffer() {
  auto buffer = std::make_shared<ReceiveBuffer>();
  buffer->transport = transport_;
  auto region = transport_->allocate(options_.buffer_bytes);
  if (!region) {
    return region.status().with_context("cannot register the receive buffer (--buffer-mb)");
  }
  buffer->region = std::move(*region);
  buffer->pool =
      std::make_unique<memory::MemoryPool>(buffer->region->data(), buffer->region->size());
  return buffer;
}

std::shared_ptr<ReceiveBuffer> Client::Impl::current_buffer() const {
  std::lock_guard lock(buffer_mu_);
  return buffer_;
}

Result<std::shared_ptr<ReceiveBuffer>> Client::Impl::buffer_for_hello(const ReceiveBuffer* before) {
  std::unique_lock lock(buffer_mu_);
  if (cluster_ || before == nullptr || buffer_.get() != before) return buffer_;
  // Outside cluster mode `before` was sealed after its Hello (the mock unlinked its shared
  // memory), so it cannot be announced to a restarted server: a fresh buffer replaces it.
  auto fresh = new_buffer();
  if (!fresh) return fresh.status();
  std::shared_ptr<ReceiveBuffer> old = std::exchange(buffer_, *fresh);
  lock.unlock();
  hold_if_retired(std::move(old));
  return fresh;
}

std::vector<std::shared_ptr<NodeSession>> Client::Impl::sessions() const {
  std::shared_lock lock(sessions_mu_);
  std::vector<std::shared_ptr<NodeSession>> out;
  for (const auto& [address, s] : by_address_) {
    if (s->current()) out.push_back(s);
  }
  return out;
}

void Client::Impl::renew_buffer_if_retired() {
  auto buffer = current_buffer();
  const uint64_t retired = buffer->retired_bytes();
  if (retired <= buffer->pool->size() / kRetiredShare) return;
  auto open = sessions();
  // Not while the servers are unreachable: each try would map a buffer and fail its Hello.
  if (std::none_of(open.begin(), open.end(), [](const auto& s) { return s->channel_ready(); })) {
    return;
  }
  if (release_held_buffers() >= kMaxHeldBuffers) return;
  std::lock_guard renew(renew_mu_);
  if (current_buffer() != buffer) return;  // another thread renewed it
  KVRDMA_LOG_WARN(
      "{} bytes of the receive buffer are retired (GETs that failed while the "
      "server's write into them could still land); opening new sessions with a "
      "fresh buffer",
      retired);
  auto fresh = new_buffer();
  if (!fresh) {
    KVRDMA_LOG_WARN("renewing the receive buffer failed: {}", fresh.status().message());
    return;
  }
  {
    std::lock_guard lock(buffer_mu_);
    buffer_ = *fresh;
  }
  hold_if_retired(std::move(buffer));
  for (const auto& s : open) {
    auto st = s->current();
    if (st->buffer == *fresh) continue;
    if (Status r = s->reopen(*st, deadline()); !r.is_ok()) {
      KVRDMA_LOG_WARN("re-open at {} failed: {}", s->address(), r.message());
    }
  }
}

void Client::Impl::hold_if_retired(std::shared_ptr<ReceiveBuffer> buffer) {
  if (!buffer || buffer->retired_bytes() == 0) return;
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

// One thread for every session: each turn renews what needs renewing, then keeps each open
// session alive. Its period is a third of the shortest lease.
void Client::Impl::keepalive_loop() {
  auto every = [this] {
    uint64_t lease = home_->current()->hello.lease_ms();
    for (const auto& s : sessions()) lease = std::min(lease, s->current()->hello.lease_ms());
    return std::chrono::milliseconds(std::max<uint64_t>(lease / 3, 50));
  };
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, every(), [this] { return stopping_; })) {
    lock.unlock();
    release_held_buffers();
    // Off the GET path: a buffer retired during an outage (renewal waits for a READY channel) is
    // renewed here once the server is back, even if no GET fails again.
    renew_buffer_if_retired();
    prune_sessions();
    auto buffer = current_buffer();
    for (const auto& s : sessions()) {
      auto st = s->current();
      // A session whose re-open failed at the last renewal still announces the old buffer.
      if (st->buffer != buffer && s->channel_ready()) {
        if (Status r = s->reopen(*st, deadline()); !r.is_ok()) {
          KVRDMA_LOG_WARN("re-open at {} failed: {}", s->address(), r.message());
        }
        continue;
      }
      s->keepalive();
    }
    lock.lock();
  }
}

Result<std::unique_ptr<Client>> Client::connect(const ClientOptions& options) {
  auto impl = std::make_unique<Impl>();
  Status s = impl->connect(options);
  if (!s.is_ok()) return s;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() {
  log::Scope scope(impl_->logger());  // Goodbye failures are logged at this client's level
  impl_.reset();
}

Result<ValueView> Client::get(std::string_view key) {
  log::Scope scope(impl_->logger());
  return impl_->get(key);
}
Result<std::string> Client::get_copy(std::string_view key) {
  log::Scope scope(impl_->logger());
  auto v = impl_->get(key);
  if (!v) return v.status();
  return std::string(v->str());
}
Status Client::put(std::string_view key, std::string_view value, uint64_t ttl_ms) {
  log::Scope scope(impl_->logger());
  return impl_->put(key, value, ttl_ms);
}
Status Client::del(std::string_view key) {
  log::Scope scope(impl_->logger());
  return impl_->del(key);
}
std::vector<Result<ValueView>> Client::get_many(std::span<const std::string_view> keys) {
  log::Scope scope(impl_->logger());
  return impl_->get_many(keys);
}
std::vector<Status> Client::put_many(std::span<const KeyValue> items, uint64_t ttl_ms) {
  log::Scope scope(impl_->logger());
  return impl_->put_many(items, ttl_ms);
}
Result<ServerStats> Client::stats() {
  log::Scope scope(impl_->logger());
  return impl_->stats(0, std::chrono::milliseconds(0));
}
Result<ServerStats> Client::stats_after(uint64_t version, std::chrono::milliseconds max_wait) {
  log::Scope scope(impl_->logger());
  return impl_->stats(version, max_wait);
}
Result<ValueLocation> Client::locate(std::string_view key) {
  log::Scope scope(impl_->logger());
  return impl_->locate(key);
}
Result<ClusterInfo> Client::cluster() {
  log::Scope scope(impl_->logger());
  return impl_->cluster();
}
uint64_t Client::session_id() const { return impl_->home().current()->hello.session_id(); }
uint64_t Client::inline_threshold() const {
  return impl_->home().current()->hello.inline_threshold();
}
uint64_t Client::buffer_size() const { return impl_->home().current()->buffer->pool->size(); }
uint64_t Client::max_value_bytes() const {
  return impl_->home().current()->hello.max_value_bytes();
}
std::string Client::transport_description() const {
  return impl_->home().current()->buffer->transport->description();
}

}  // namespace kvrdma
