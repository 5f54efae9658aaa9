// kvrdma::Server: a cache node. Owns the memory pool, the store, the transport and the gRPC
// service. Thread-safe: every method may be called from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "kvrdma/export.h"
#include "kvrdma/options.h"
#include "kvrdma/stats.h"
#include "kvrdma/status.h"

namespace kvrdma {

namespace server {
struct ServerAccess;  // internal entry points and test seam (lib/server/cluster_node.h)
}

class KVRDMA_EXPORT Server {
 public:
  // Allocates and registers the pool, opens the transport and starts serving on
  // options.listen_addr. Fails with the reason (address in use, bad option, no provider...).
  // In cluster mode (options.cluster set) it also connects to options.etcd_endpoints and
  // registers the node once listening; a node id registered by another live node, an etcd that
  // does not answer or a wildcard listen address without options.advertise_addr stop the start.
  static Result<std::unique_ptr<Server>> start(const ServerOptions& options);

  // Stops serving (in-flight calls finish or are cancelled) and frees everything.
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // "127.0.0.1:43121": the address actually bound, with the real port when 0 was asked for.
  std::string address() const;
  // The transport in use, e.g. "mock (shared memory)" or "libfabric tcp;ofi_rxm domain lo".
  std::string transport_description() const;
  ServerStats stats() const;
  // Prometheus text format 0.0.4: what --metrics-addr serves at /metrics (every family in
  // docs/metrics.md). Works whether or not options.metrics_addr is set.
  std::string metrics_text() const;
  // "127.0.0.1:9100": where /metrics is served (the real port when 0 was asked for); empty
  // when options.metrics_addr is empty.
  std::string metrics_address() const;

  // Cluster mode: leaves the cluster gracefully. Marks this node "leaving", waits until a map
  // shows it owning no slot (its values moved to the other nodes), then ends its registration.
  // DEADLINE_EXCEEDED when `timeout` passes first (values still here are lost at shutdown).
  // OK at once outside cluster mode. Call shutdown() afterwards.
  Status leave(std::chrono::milliseconds timeout);

  // Stops serving; idempotent. The destructor calls it. In cluster mode the node's registration
  // ends at once (without leave(), the values it holds are lost to the cluster).
  void shutdown();
  // Blocks until shutdown() has been called from another thread.
  void wait();

  class Impl;

 private:
  friend struct server::ServerAccess;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvrdma
