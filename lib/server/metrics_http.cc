#include "server/metrics_http.h"

#include <fmt/format.h>
#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>

#include <charconv>
#include <thread>

namespace kvrdma::server {
namespace {

// Scrapes are small and rare (Prometheus asks every few seconds): two workers are plenty, and a
// slow or stuck scraper cannot hold a connection past these bounds.
constexpr size_t kWorkers = 2;
constexpr time_t kIoTimeoutSeconds = 5;

struct HostPort {
  std::string host;  // without brackets
  int port = 0;
};

Result<HostPort> split_address(const std::string& addr) {
  const size_t colon = addr.rfind(':');
  Status bad(Code::kInvalidArgument,
             fmt::format("metrics address '{}' is not host:port (e.g. 127.0.0.1:9100 or "
                         "[::1]:9100); fix metrics_addr (--metrics-addr)",
                         addr));
  if (colon == std::string::npos || colon == 0) return bad;
  HostPort hp;
  hp.host = addr.substr(0, colon);
  if (hp.host.front() == '[') {
    if (hp.host.size() < 3 || hp.host.back() != ']') return bad;
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  const char* first = addr.data() + colon + 1;
  const char* last = addr.data() + addr.size();
  auto [end, ec] = std::from_chars(first, last, hp.port);
  if (first == last || ec != std::errc() || end != last || hp.port < 0 || hp.port > 65535) {
    return bad;
  }
  return hp;
}

// SO_REUSEADDR only: a restart binds through TIME_WAIT, but (unlike httplib's default, which
// adds SO_REUSEPORT) a second server on a port in use fails instead of sharing it.
void reuse_address_only(socket_t sock) {
  int yes = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
}

}  // namespace

class MetricsHttp::Impl {
 public:
  httplib::Server http;
  std::thread thread;
};

Result<std::unique_ptr<MetricsHttp>> MetricsHttp::start(const std::string& addr,
                                                        std::function<std::string()> render) {
  auto hp = split_address(addr);
  if (!hp) return hp.status();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(hp->host.c_str(), nullptr, &hints, &found); rc != 0) {
    return Status(Code::kUnavailable,
                  fmt::format("cannot serve metrics on {}: host '{}' does not resolve ({}); give "
                              "an address of this host in metrics_addr (--metrics-addr)",
                              addr, hp->host, gai_strerror(rc)));
  }
  freeaddrinfo(found);

  auto impl = std::make_unique<Impl>();
  httplib::Server& http = impl->http;
  http.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
  http.set_socket_options(reuse_address_only);
  http.set_read_timeout(kIoTimeoutSeconds, 0);
  http.set_write_timeout(kIoTimeoutSeconds, 0);
  http.set_keep_alive_timeout(kIoTimeoutSeconds);
  http.set_payload_max_length(64 << 10);
  http.Get("/metrics",
           [render = std::move(render)](const httplib::Request&, httplib::Response& res) {
             res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
           });
  int port = hp->port;
  if (port == 0) {
    port = http.bind_to_any_port(hp->host);
    if (port < 0) port = 0;
  } else if (!http.bind_to_port(hp->host, port)) {
    port = 0;
  }
  if (port == 0) {
    return Status(Code::kUnavailable,
                  fmt::format("cannot serve metrics on {}: the port is in use or '{}' is not an "
                              "address of this host; pick another metrics_addr (--metrics-addr)",
                              addr, hp->host));
  }
  const bool v6 = hp->host.find(':') != std::string::npos;
  std::string bound =
      v6 ? fmt::format("[{}]:{}", hp->host, port) : fmt::format("{}:{}", hp->host, port);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->http.listen_after_bind(); });
  return std::unique_ptr<MetricsHttp>(new MetricsHttp(std::move(impl), std::move(bound)));
}

MetricsHttp::MetricsHttp(std::unique_ptr<Impl> impl, std::string address)
    : impl_(std::move(impl)), address_(std::move(address)) {}

MetricsHttp::~MetricsHttp() {
  // httplib's stop() does nothing until its loop has marked itself running (the flag is set
  // inside listen_after_bind), so wait for that first; it takes microseconds after start().
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!impl_->http.is_running() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl_->http.stop();  // shuts the listening socket: the accept loop ends
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace kvrdma::server
