// MetricsHttp: the /metrics endpoint of --metrics-addr, an HTTP server (Debian's cpp-httplib)
// answering GET /metrics with the Prometheus text a callback renders. Anything else is 404.
// Thread-safe: start, address and the destructor may run on any thread; the callback runs on
// the endpoint's own worker threads (at most two), concurrently with the server's handlers.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "kvrdma/status.h"

namespace kvrdma::server {

class MetricsHttp {
 public:
  // Listens on `addr` ("host:port", "[v6]:port"; port 0 picks a free one) and serves
  // `render()` at /metrics from a thread of its own. UNAVAILABLE naming the address when the
  // host does not resolve to a local address or the port is taken.
  static Result<std::unique_ptr<MetricsHttp>> start(const std::string& addr,
                                                    std::function<std::string()> render);
  // Stops serving: open scrapes finish or are cut, and no render() runs after this returns.
  ~MetricsHttp();
  MetricsHttp(const MetricsHttp&) = delete;
  MetricsHttp& operator=(const MetricsHttp&) = delete;

  // "127.0.0.1:9100": the address bound, with the real port when 0 was asked for.
  const std::string& address() const { return address_; }

  class Impl;

 private:
  explicit MetricsHttp(std::unique_ptr<Impl> impl, std::string address);
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace kvrdma::server
