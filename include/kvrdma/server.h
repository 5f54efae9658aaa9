// kvrdma::Server: a cache node. Owns the memory pool, the store, the transport and the gRPC
// service. Thread-safe: every method may be called from any thread.
#pragma once

#include <memory>
#include <string>

#include "kvrdma/export.h"
#include "kvrdma/options.h"
#include "kvrdma/stats.h"
#include "kvrdma/status.h"

namespace kvrdma {

class KVRDMA_EXPORT Server {
 public:
  // Allocates and registers the pool, opens the transport and starts serving on
  // options.listen_addr. Fails with the reason (address in use, bad option, no provider...).
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

  // Stops serving; idempotent. The destructor calls it.
  void shutdown();
  // Blocks until shutdown() has been called from another thread.
  void wait();

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvrdma
