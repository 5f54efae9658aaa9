#include "kvrdma/server.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/logging.h"
#include "common/units.h"
#include "rpc/security.h"
#include "server/channel_service.h"
#include "server/cluster_node.h"
#include "server/metrics_http.h"
#include "server/replication.h"
#include "server/service.h"
#include "transport/mock_transport.h"

namespace kvrdma {

// Owns the core (pool, store, transport, sessions), the gRPC server and the sweeper thread.
class Server::Impl {
 public:
  ~Impl() { shutdown(); }

  // `meta`: the cluster's MetaStore (tests); null: connect to options.etcd_endpoints when in
  // cluster mode.
  Status start(const ServerOptions& options, std::shared_ptr<cluster::MetaStore> meta,
               bool meta_owned);
  void shutdown();
  void wait();

  server::ServerCore core;
  std::string address;
  // This server's level (options.log_level), installed on the threads it runs: never the
  // process's, so an embedding program or a Client in the same process keeps its own.
  std::unique_ptr<log::Logger> logger;
  // Cluster mode: the agent; stopped first at shutdown, destroyed with the Impl (handlers may
  // forward deletes through it until gRPC has stopped, a leave() may still be returning).
  std::unique_ptr<server::ClusterNode> cluster_node;
  // --metrics-addr: the /metrics endpoint; stopped first at shutdown (it reads the core).
  std::unique_ptr<server::MetricsHttp> metrics_http;
  std::string metrics_address;  // metrics_http's; set during start, read-only after

 private:
  // Cluster-mode settings checked before anything starts; connects to etcd unless `meta` is
  // given. *owned: nobody else shares the store.
  Result<std::shared_ptr<cluster::MetaStore>> cluster_store(
      const ServerOptions& options, std::shared_ptr<cluster::MetaStore> meta, bool* owned);
  void sweep_loop();
  // Starts gRPC on every address; returns the port bound, 0 on failure.
  int listen(const std::vector<std::string>& addrs, const ServerOptions& options);
  static int free_loopback_port();

  std::shared_ptr<grpc::ServerCredentials> credentials_;  // TLS or insecure, per SecurityOptions
  std::unique_ptr<server::KvService> service_;
  std::unique_ptr<server::ChannelService> channel_;  // null with --channel false
  std::unique_ptr<grpc::Server> grpc_;
  std::thread sweeper_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  bool stopped_ = false;   // guarded by mu_
};

Result<std::shared_ptr<cluster::MetaStore>> Server::Impl::cluster_store(
    const ServerOptions& options, std::shared_ptr<cluster::MetaStore> meta, bool* owned) {
  const std::string host = options.listen_addr.substr(0, options.listen_addr.rfind(':'));
  if (options.advertise_addr.empty() &&
      (host == "0.0.0.0" || host == "[::]" || host == "::" || host.empty())) {
    return Status(Code::kInvalidArgument,
                  fmt::format("cluster mode needs the address other nodes and clients dial, and "
                              "ServerOptions::listen_addr / listen-addr {} listens on every "
                              "interface; give ServerOptions::advertise_addr / advertise-addr "
                              "host:port",
                              options.listen_addr));
  }
  *owned = false;
  if (meta) return meta;
  std::vector<std::string> endpoints;
  for (size_t pos = 0; pos <= options.etcd_endpoints.size();) {
    size_t comma = std::min(options.etcd_endpoints.find(',', pos), options.etcd_endpoints.size());
    std::string e = options.etcd_endpoints.substr(pos, comma - pos);
    e.erase(0, e.find_first_not_of(" \t"));
    e.erase(e.find_last_not_of(" \t") + 1);
    if (!e.empty()) endpoints.push_back(e);
    pos = comma + 1;
  }
  if (endpoints.empty()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("cluster mode (ServerOptions::cluster / cluster {}) keeps its "
                              "membership and slot map in etcd; give ServerOptions::etcd_endpoints "
                              "/ etcd-endpoints, e.g. "
                              "http://127.0.0.1:2379",
                              options.cluster));
  }
  // As long as a lease (at least 3 s): a busy etcd that answers within that time is alive
  // enough for this node, and every later etcd call is bounded by the same time.
  auto store =
      cluster::connect_etcd(endpoints, std::max(std::chrono::milliseconds(3000),
                                                std::chrono::milliseconds(options.node_lease_ms)));
  if (!store) {
    return store.status().with_context(fmt::format("cluster '{}'", options.cluster));
  }
  *owned = true;
  return std::shared_ptr<cluster::MetaStore>(std::move(*store));
}

Status Server::Impl::start(const ServerOptions& options, std::shared_ptr<cluster::MetaStore> meta,
                           bool meta_owned) {
  core.options = options;
  logger = std::make_unique<log::Logger>(options.log_level, options.log_format,
                                         log::Labels{.node = options.node_id, .client = {}});
  log::Scope log_scope(logger.get());
  bool owns_meta = false;
  if (!options.cluster.empty()) {
    const bool given = meta != nullptr;
    auto store = cluster_store(options, std::move(meta), &owns_meta);
    if (!store) return store.status();
    if (given) owns_meta = meta_owned;
    meta = std::move(*store);
  }
  if (options.transport.mock) {
    if (size_t n = transport::remove_stale_shm_objects()) {
      KVRDMA_LOG_INFO("removed {} shared-memory objects left by killed kvrdma processes", n);
    }
  }
  auto t = transport::make_transport(options.transport);
  if (!t) return t.status();
  core.transport = std::move(*t);
  // A threshold the operator set holds for GETs and PUTs alike; "by transport" picks each.
  core.put_inline_threshold = core.options.inline_threshold != 0
                                  ? core.options.inline_threshold
                                  : transport::default_put_inline_threshold(core.transport->kind());
  if (core.options.inline_threshold == 0) {
    core.options.inline_threshold = transport::default_inline_threshold(core.transport->kind());
  }
  auto region = core.transport->allocate(options.memory_bytes);
  if (!region) {
    return region.status().with_context(
        fmt::format("cannot register a pool of {} (ServerOptions::memory_bytes / memory-mb)",
                    format_bytes(options.memory_bytes)));
  }
  core.pool_region = std::move(*region);
  core.pool =
      std::make_unique<memory::MemoryPool>(core.pool_region->data(), core.pool_region->size());
  store::StoreOptions so;
  so.evict = options.eviction == Eviction::kLru;
  so.max_value_bytes = options.max_value_bytes;
  so.max_key_bytes = options.max_key_bytes;
  core.store = std::make_unique<store::Store>(*core.pool, SteadyClock::instance(), so);
  core.sessions =
      std::make_unique<server::SessionTable>(std::chrono::milliseconds(options.lease_ms));
  core.cluster = std::make_unique<server::ClusterView>(options.node_id, !options.cluster.empty());
  if (!options.cluster.empty()) core.replication = std::make_shared<server::Replication>(core);
  // Set before serving and never reassigned (handlers call it concurrently); the agent behind it
  // lives until after gRPC has stopped.
  core.forward_delete = [this](std::string_view key, const v1::WrongOwner& to,
                               std::chrono::steady_clock::time_point deadline) {
    if (!cluster_node) return Status(Code::kUnavailable, "this node is not in a cluster");
    return cluster_node->forward_delete(key, to, deadline);
  };

  auto creds = rpc::server_credentials(options.security);
  if (!creds) return creds.status();
  credentials_ = std::move(*creds);
  service_ = std::make_unique<server::KvService>(core);
  if (options.transport.channel) {
    auto ch = server::ChannelService::start(core, *service_);
    if (ch) channel_ = std::move(*ch);
    else KVRDMA_LOG_INFO("request channel off: {}", ch.status().message());
  }
  std::string host = options.listen_addr.substr(0, options.listen_addr.rfind(':'));
  std::string port = options.listen_addr.substr(options.listen_addr.rfind(':') + 1);
  // "localhost" may resolve to 127.0.0.1 alone (as in many /etc/hosts); listen on both loopback
  // addresses explicitly so clients reach us at 127.0.0.1 and [::1] alike.
  std::vector<std::string> addrs = {options.listen_addr};
  if (host == "localhost") {
    if (port == "0") port = std::to_string(free_loopback_port());
    addrs = {"127.0.0.1:" + port, "[::1]:" + port};
  }
  int bound = listen(addrs, core.options);  // the resolved inline threshold sizes messages
  if (bound == 0 && addrs.size() == 2) bound = listen({addrs[0]}, core.options);  // no IPv6 here
  if (bound == 0) {
    return Status(Code::kUnavailable,
                  fmt::format("cannot listen on {}: the address is in use or not local; pick "
                              "another ServerOptions::listen_addr / listen-addr (port 0 picks a "
                              "free one)",
                              options.listen_addr));
  }
  address = fmt::format("{}:{}", host, bound);
  core.public_address = options.advertise_addr.empty() ? address : options.advertise_addr;
  if (!options.metrics_addr.empty()) {
    auto http = server::MetricsHttp::start(options.metrics_addr, [this] {
      return server::render_metrics(core.stats(), core.metrics);
    });
    if (!http) return http.status();  // the caller's shutdown() stops what started
    metrics_http = std::move(*http);
    metrics_address = metrics_http->address();
  }
  sweeper_ = std::thread([this] {
    log::Scope log_scope(logger.get());
    sweep_loop();
  });
  if (!options.cluster.empty()) {
    auto node = server::ClusterNode::start(core, std::move(meta), owns_meta);
    if (!node) return node.status();  // the caller's shutdown() stops what started
    cluster_node = std::move(*node);
  }
  return Status();
}

int Server::Impl::listen(const std::vector<std::string>& addrs, const ServerOptions& options) {
  grpc::ServerBuilder builder;
  // Without this gRPC sets SO_REUSEPORT and a second server on a busy port would start too.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::vector<int> ports(addrs.size(), 0);
  for (size_t i = 0; i < addrs.size(); ++i) {
    builder.AddListeningPort(addrs[i], credentials_, &ports[i]);
  }
  builder.RegisterService(service_.get());
  uint64_t limit = options.max_message_bytes != 0 ? options.max_message_bytes
                                                  : 2 * options.inline_threshold + (4 << 20);
  int max_msg = static_cast<int>(std::min<uint64_t>(limit, (1ull << 31) - 1));
  builder.SetMaxReceiveMessageSize(max_msg);
  builder.SetMaxSendMessageSize(max_msg);
  grpc_ = builder.BuildAndStart();
  for (int p : ports) {
    if (!grpc_ || p == 0) {
      if (grpc_) grpc_->Shutdown();
      grpc_.reset();
      return 0;
    }
  }
  return ports[0];
}

int Server::Impl::free_loopback_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  if (fd >= 0) close(fd);
  return port;
}

void Server::Impl::sweep_loop() {
  std::unique_lock lock(mu_);
  auto interval = std::chrono::milliseconds(core.options.sweep_interval_ms);
  while (!cv_.wait_for(lock, interval, [this] { return stopping_; })) {
    lock.unlock();
    auto now = std::chrono::steady_clock::now();
    size_t removed = core.store->sweep_expired();
    size_t reservations = core.sessions->expire_reservations(now);
    core.counters.reservations_expired += reservations;
    size_t sessions = core.sessions->expire(now);
    if (sessions > 0) {
      core.counters.sessions_expired += sessions;
      KVRDMA_LOG_INFO("{} client sessions expired (no call for {} ms)", sessions,
                      core.options.lease_ms);
    }
    if (removed + reservations + sessions > 0) core.changes.bump();
    lock.lock();
  }
}

void Server::Impl::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
  }
  cv_.notify_all();
  metrics_http.reset();                    // no scrape reads the core after this
  if (cluster_node) cluster_node->stop();  // ends the registration before the node goes quiet
  core.changes.stop();  // answers waiting Stats calls now, so shutdown does not wait for them
  if (service_) service_->stop_streams();  // and ends idle GetStreams
  if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (sweeper_.joinable()) sweeper_.join();
  if (grpc_) grpc_->Wait();
  grpc_.reset();
  channel_.reset();  // no Hello can open a link any more
  service_.reset();
  // Reverse order of construction: sessions hold pool extents, the store pins the pool.
  core.sessions.reset();
  core.store.reset();
  core.pool.reset();
  core.pool_region.reset();
  core.transport.reset();
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

void Server::Impl::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return stopped_; });
}

Result<std::unique_ptr<Server>> Server::start(const ServerOptions& options) {
  return server::ServerAccess::start(options, nullptr, false);
}

Result<std::unique_ptr<Server>> server::ServerAccess::start(
    const ServerOptions& options, std::shared_ptr<cluster::MetaStore> meta, bool meta_owned) {
  auto impl = std::make_unique<Server::Impl>();
  Status s = impl->start(options, std::move(meta), meta_owned);
  if (!s.is_ok()) return s;
  log::Scope log_scope(impl->logger.get());
  KVRDMA_LOG_DEBUG("kv-server listening on {}", impl->address);
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

server::ServerCore& server::ServerAccess::core(Server& server) { return server.impl_->core; }

server::ClusterNode* server::ServerAccess::cluster_node(Server& server) {
  return server.impl_->cluster_node.get();
}

Status Server::leave(std::chrono::milliseconds timeout) {
  if (!impl_->cluster_node) return Status();
  return impl_->cluster_node->leave(timeout);
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

std::string Server::address() const { return impl_->address; }
std::string Server::transport_description() const {
  return impl_->core.transport ? impl_->core.transport->description() : "stopped";
}
ServerStats Server::stats() const {
  return impl_->core.store ? impl_->core.stats() : ServerStats{};  // empty once shut down
}
std::string Server::metrics_text() const {
  // Once shut down the figures are empty (as stats()); the histograms stay readable.
  return server::render_metrics(stats(), impl_->core.metrics);
}
std::string Server::metrics_address() const { return impl_->metrics_address; }
void Server::shutdown() { impl_->shutdown(); }
void Server::wait() { impl_->wait(); }

}  // namespace kvrdma
