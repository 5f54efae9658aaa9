// The doctor's runs (tools/doctor.h): which checks each program gets, the transport checks that go
// through the library's own code path, the client's reach of its servers, and the report.
#include "doctor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>

#include "cli_common.h"
#include "common/logging.h"
#include "common/units.h"
#include "kvrdma/client.h"
#include "transport/transport.h"

namespace kvrdma::tools {
namespace {

using Steady = std::chrono::steady_clock;

// Large enough to cross the fabric transport's piece boundaries on small MTUs, small enough to
// cost nothing on any host.
constexpr size_t kLoopbackBytes = 4 << 20;

Check ok(std::string name, std::string detail) {
  return {std::move(name), Verdict::kOk, std::move(detail), {}};
}
Check fail(std::string name, std::string detail, std::string fix) {
  return {std::move(name), Verdict::kFail, std::move(detail), std::move(fix)};
}

struct HostMemory {
  uint64_t total = 0, available = 0;
};

HostMemory host_memory() {
  HostMemory m;
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  // Bounded: /proc/meminfo has a few dozen lines.
  for (int i = 0; i < 200 && in >> key >> kib >> unit; ++i) {
    if (key == "MemTotal:") m.total = kib << 10;
    if (key == "MemAvailable:") m.available = kib << 10;
  }
  return m;
}

uint64_t shm_free() {
  struct statvfs s {};
  if (::statvfs("/dev/shm", &s) != 0) return 0;
  return static_cast<uint64_t>(s.f_bavail) * s.f_frsize;
}

rlim_t memlock_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_MEMLOCK, &r) != 0) return 0;
  return r.rlim_cur;
}

// Whether the transport registers memory by pinning pages (so the memlock limit binds).
bool pins_pages(const TransportOptions& t, std::string_view kind) {
  if (t.mock) return false;
  auto has = [&](std::string_view p) {
    return kind.find(p) != std::string_view::npos || t.provider == p;
  };
  return has("verbs") || has("efa");
}

// Host checks both programs share, for `bytes` of registered memory.
void host_checks(std::vector<Check>& out, const TransportOptions& t, uint64_t bytes,
                 std::string_view what, std::string_view setting, std::string_view kind) {
  out.push_back(check_memlock(bytes, what, setting, memlock_limit(), pins_pages(t, kind)));
  HostMemory m = host_memory();
  out.push_back(check_memory(bytes, what, setting, m.total, m.available));
  if (t.mock) out.push_back(check_shm_space(bytes, what, setting, shm_free()));
  out.push_back(check_providers(t));
}

// Opens the transport the options name and writes kLoopbackBytes to itself through it:
// make_transport, allocate, connect to its own address, attach, write_and_wait, compare.
// *kind: the transport's kind when it opened.
std::vector<Check> transport_checks(const TransportOptions& t, std::string* kind) {
  std::vector<Check> out;
  const std::string chosen = t.mock ? "--mock true" : "--mock false --provider " + t.provider;
  auto made = transport::make_transport(t);
  if (!made) {
    out.push_back(fail("transport", fmt::format("{}: {}", chosen, made.status().message()),
                       "pick a provider fabric-providers lists (--provider), check "
                       "--fabric-iface, or run with --mock true (one host only)"));
    return out;
  }
  transport::Transport& tr = **made;
  *kind = tr.kind();
  out.push_back(ok("transport", fmt::format("{}: {}", chosen, tr.description())));

  const std::string name = "loopback-write";
  const std::string fix =
      "the transport opened but cannot move bytes on this host: try another --provider, check "
      "the memlock line, or run with --mock true";
  auto src = tr.allocate(kLoopbackBytes);
  auto dst = src ? tr.allocate(kLoopbackBytes)
                 : Result<std::unique_ptr<transport::LocalRegion>>(src.status());
  if (!dst) {
    out.push_back(fail(name, "allocating registered memory: " + dst.status().message(), fix));
    return out;
  }
  auto peer = tr.connect(tr.address());
  if (!peer) {
    out.push_back(fail(name, "connecting to itself: " + peer.status().message(), fix));
    return out;
  }
  auto remote = (*peer)->attach((*dst)->descriptor());
  if (!remote) {
    out.push_back(fail(name, "attaching its own memory: " + remote.status().message(), fix));
    return out;
  }
  std::byte* in = (*src)->data();
  for (size_t i = 0; i < kLoopbackBytes; ++i) in[i] = static_cast<std::byte>((i * 131 + 7) >> 3);
  std::memset((*dst)->data(), 0, kLoopbackBytes);
  const auto start = Steady::now();
  Status s;
  {
    transport::WriteExpectation expect = tr.expect_writes();  // we are also the target
    s = transport::write_and_wait(tr, **src, 0, *remote, 0, kLoopbackBytes,
                                  start + std::chrono::seconds(10));
  }
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(Steady::now() - start).count();
  if (!s.is_ok()) {
    out.push_back(fail(name, "write_and_wait: " + s.to_string(), fix));
  } else if (std::memcmp(in, (*dst)->data(), kLoopbackBytes) != 0) {
    out.push_back(fail(name,
                       fmt::format("the write completed but the {} read back differ",
                                   format_bytes(kLoopbackBytes)),
                       "a transport bug: report it with this output; meanwhile use --mock true "
                       "or another --provider"));
  } else {
    out.push_back(ok(name, fmt::format("{} written to itself and read back identical in {} us",
                                       format_bytes(kLoopbackBytes), us)));
  }
  return out;
}

// "host:port" pieces of one --server-addr entry ("http://", "[v6]" and spaces stripped).
std::optional<std::pair<std::string, std::string>> split_target(std::string a) {
  a.erase(0, a.find_first_not_of(" \t"));
  a.erase(a.find_last_not_of(" \t") + 1);
  for (std::string_view scheme : {"http://", "https://", "dns:///", "ipv4:", "ipv6:"}) {
    if (a.rfind(scheme, 0) == 0) a = a.substr(scheme.size());
  }
  const size_t colon = a.rfind(':');
  if (colon == std::string::npos || colon + 1 == a.size()) return std::nullopt;
  std::string host = a.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, a.substr(colon + 1));
}

// Empty when some address of host:port accepts a TCP connection within `limit`, else why not.
std::string tcp_reach(const std::string& host, const std::string& port,
                      std::chrono::milliseconds limit) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res)) return gai_strerror(rc);
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(res, &freeaddrinfo);
  std::string why = "no address";
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, static_cast<int>(limit.count())) == 1 ? 0 : -1;
      int err = rc == 0 ? 0 : ETIMEDOUT;
      socklen_t len = sizeof err;
      if (rc == 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      errno = err;
      rc = err == 0 ? 0 : -1;
    }
    why = rc == 0 ? "" : std::strerror(errno);
    ::close(fd);
    if (rc == 0) return "";
  }
  return why;
}

std::vector<Check> server_reach_checks(const ClientOptions& o) {
  std::vector<Check> out;
  std::string rest = o.server_addr;
  // Bounded by the address list's length.
  for (size_t pos = 0; pos <= rest.size();) {
    size_t comma = std::min(rest.find(',', pos), rest.size());
    std::string entry = rest.substr(pos, comma - pos);
    pos = comma + 1;
    if (entry.find_first_not_of(" \t") == std::string::npos) continue;
    auto target = split_target(entry);
    if (!target) {
      out.push_back(fail("server-reachable", fmt::format("'{}' is not host:port", entry),
                         "give --server-addr as host:port (or http://host:port), comma-separated "
                         "for a cluster"));
      continue;
    }
    const std::string why = tcp_reach(target->first, target->second, std::chrono::seconds(3));
    if (why.empty()) {
      out.push_back(ok("server-reachable", fmt::format("{}: accepts TCP connections", entry)));
    } else {
      out.push_back(fail("server-reachable", fmt::format("{}: {}", entry, why),
                         "start kv-server there (kv-server doctor checks its host), correct "
                         "--server-addr, or open the port in the firewall"));
    }
  }
  return out;
}

Check hello_check(const ClientOptions& o) {
  auto client = Client::connect(o);
  if (!client) {
    return fail("hello", client.status().to_string(),
                "the message names what differs; the usual causes: --mock / --provider not the "
                "server's, a wrong or missing --auth-token, TLS on one side only, or a "
                "--tls-ca that did not sign the server's certificate");
  }
  auto stats = (*client)->stats();
  return ok("hello", fmt::format("session {:x} opened over {}; inline threshold {}, receive buffer "
                                 "{}{}",
                                 (*client)->session_id(), (*client)->transport_description(),
                                 format_bytes((*client)->inline_threshold()),
                                 format_bytes((*client)->buffer_size()),
                                 stats ? fmt::format(", server holds {} keys", stats->keys) : ""));
}

// Cluster mode: every etcd endpoint accepts TCP connections (the membership and the slot map
// live there; a node that cannot reach etcd cannot join).
std::vector<Check> etcd_checks(const ServerOptions& o) {
  std::vector<Check> out;
  if (o.cluster.empty()) return out;
  const std::string& list = o.etcd_endpoints;
  // Bounded by the list's length.
  for (size_t pos = 0; pos <= list.size();) {
    size_t comma = std::min(list.find(',', pos), list.size());
    std::string entry = list.substr(pos, comma - pos);
    pos = comma + 1;
    if (entry.find_first_not_of(" \t") == std::string::npos) continue;
    auto target = split_target(entry);
    const std::string why = target
                                ? tcp_reach(target->first, target->second, std::chrono::seconds(3))
                                : "not host:port";
    if (why.empty()) {
      out.push_back(ok("etcd", fmt::format("{}: accepts TCP connections", entry)));
    } else {
      out.push_back(fail("etcd", fmt::format("{}: {}", entry, why),
                         "start etcd there, correct --etcd-endpoints, or open the port"));
    }
  }
  if (out.empty()) {
    out.push_back(fail("etcd",
                       fmt::format("cluster mode (--cluster {}) and no etcd endpoint", o.cluster),
                       "give --etcd-endpoints, e.g. http://127.0.0.1:2379"));
  }
  return out;
}

bool loopback_host(const std::string& listen_addr) {
  const std::string host = listen_addr.substr(0, listen_addr.rfind(':'));
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]" || host == "::1";
}

}  // namespace

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kOk: return "ok";
    case Verdict::kWarn: return "warn";
    case Verdict::kFail: return "fail";
  }
  return "fail";
}

std::vector<Check> doctor_server(const ServerOptions& o) {
  std::vector<Check> out;
  std::string kind;
  std::vector<Check> transport = transport_checks(o.transport, &kind);
  host_checks(out, o.transport, o.memory_bytes, "pool", "memory-mb", kind);
  out.insert(out.end(), transport.begin(), transport.end());
  out.push_back(check_listen(o.listen_addr));
  std::vector<Check> etcd = etcd_checks(o);
  out.insert(out.end(), etcd.begin(), etcd.end());
  std::vector<Check> tls = check_tls(o.security, /*server=*/true);
  out.insert(out.end(), tls.begin(), tls.end());
  if (!o.security.auth_token.empty()) {
    out.push_back(ok("auth-token", "set: every RPC must carry it"));
  } else if (loopback_host(o.listen_addr)) {
    out.push_back(ok("auth-token", "none; the server listens on loopback only"));
  } else {
    out.push_back({"auth-token", Verdict::kWarn,
                   fmt::format("none, and {} is reachable from other hosts: anyone who reaches "
                               "the port can read, write and delete",
                               o.listen_addr),
                   "set KVRDMA_AUTH_TOKEN in the service's environment file (or --auth-token), "
                   "and give clients the same"});
  }
  return out;
}

std::vector<Check> doctor_client(const ClientOptions& o) {
  std::vector<Check> out;
  std::string kind;
  std::vector<Check> transport = transport_checks(o.transport, &kind);
  host_checks(out, o.transport, o.buffer_bytes, "receive buffer", "buffer-mb", kind);
  out.insert(out.end(), transport.begin(), transport.end());
  std::vector<Check> tls = check_tls(o.security, /*server=*/false);
  out.insert(out.end(), tls.begin(), tls.end());
  std::vector<Check> reach = server_reach_checks(o);
  const bool reachable = std::any_of(reach.begin(), reach.end(),
                                     [](const Check& c) { return c.verdict == Verdict::kOk; });
  out.insert(out.end(), reach.begin(), reach.end());
  if (reachable) {
    out.push_back(hello_check(o));
  } else {
    out.push_back(fail("hello", "not tried: no server address answered",
                       "fix the server-reachable lines first"));
  }
  return out;
}

std::string doctor_text(const std::vector<Check>& checks) {
  std::string out;
  size_t counts[3] = {0, 0, 0};
  for (const Check& c : checks) {
    ++counts[static_cast<int>(c.verdict)];
    out += fmt::format("{:<4} {}: {}", verdict_name(c.verdict), c.name, c.detail);
    if (!c.fix.empty()) out += "; fix: " + c.fix;
    out += '\n';
  }
  out += fmt::format("{} ok, {} warn, {} fail\n", counts[0], counts[1], counts[2]);
  return out;
}

std::string doctor_json(std::string_view program, const std::vector<Check>& checks) {
  std::string out = fmt::format(R"({{"program":"{}","ok":{},"checks":[)", log::json_escape(program),
                                doctor_exit_code(checks) == kExitOk ? "true" : "false");
  for (size_t i = 0; i < checks.size(); ++i) {
    const Check& c = checks[i];
    out += fmt::format(R"({}{{"name":"{}","verdict":"{}","detail":"{}","fix":"{}"}})",
                       i == 0 ? "" : ",", log::json_escape(c.name), verdict_name(c.verdict),
                       log::json_escape(c.detail), log::json_escape(c.fix));
  }
  out += "]}\n";
  return out;
}

int doctor_exit_code(const std::vector<Check>& checks) {
  return std::any_of(checks.begin(), checks.end(),
                     [](const Check& c) { return c.verdict == Verdict::kFail; })
             ? kExitError
             : kExitOk;
}

}  // namespace kvrdma::tools
