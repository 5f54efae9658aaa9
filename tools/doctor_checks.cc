// The host checks of the doctor (tools/doctor.h): limits, memory, /dev/shm, libfabric providers,
// the listen port and TLS files. Each looks and reports; none changes anything.
#include <fmt/format.h>
#include <netdb.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <rdma/fabric.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>

#include "common/units.h"
#include "doctor.h"
#include "transport/fabric/fabric_api.h"

namespace kvrdma::tools {

namespace fabric_api = transport::fabric_api;
namespace {

Check ok(std::string name, std::string detail) {
  return {std::move(name), Verdict::kOk, std::move(detail), {}};
}
Check warn(std::string name, std::string detail, std::string fix) {
  return {std::move(name), Verdict::kWarn, std::move(detail), std::move(fix)};
}
Check fail(std::string name, std::string detail, std::string fix) {
  return {std::move(name), Verdict::kFail, std::move(detail), std::move(fix)};
}

std::string mr_mode_text(uint64_t mode) {
  static constexpr std::pair<uint64_t, const char*> kBits[] = {{FI_MR_LOCAL, "LOCAL"},
                                                               {FI_MR_RAW, "RAW"},
                                                               {FI_MR_VIRT_ADDR, "VIRT_ADDR"},
                                                               {FI_MR_ALLOCATED, "ALLOCATED"},
                                                               {FI_MR_PROV_KEY, "PROV_KEY"},
                                                               {FI_MR_MMU_NOTIFY, "MMU_NOTIFY"},
                                                               {FI_MR_RMA_EVENT, "RMA_EVENT"},
                                                               {FI_MR_ENDPOINT, "ENDPOINT"},
                                                               {FI_MR_HMEM, "HMEM"}};
  std::string out;
  for (const auto& [bit, name] : kBits) {
    if (mode & bit) out += (out.empty() ? "" : "|") + std::string(name);
  }
  return out.empty() ? "none" : out;
}

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

// Opens `path` for `setting`; on failure *check says why.
File open_pem(const std::string& path, const std::string& setting, Check* check) {
  File f(std::fopen(path.c_str(), "r"));
  if (!f) {
    *check = fail(setting, fmt::format("cannot read {}: {}", path, std::strerror(errno)),
                  fmt::format("check --{} and that the user running the program may read the file "
                              "(ls -l {})",
                              setting, path));
  }
  return f;
}

// The certificate in `path`, or null with *check saying why; an ok *check tells its validity.
std::unique_ptr<X509, X509Free> load_cert(const std::string& path, const std::string& setting,
                                          Check* check) {
  File f = open_pem(path, setting, check);
  if (!f) return nullptr;
  std::unique_ptr<X509, X509Free> cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    *check = fail(setting, fmt::format("{} holds no PEM certificate", path),
                  fmt::format("give --{} a PEM file (-----BEGIN CERTIFICATE-----)", setting));
    return nullptr;
  }
  int days = 0, secs = 0;
  ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(cert.get()));
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    *check = fail(setting, fmt::format("{} is not valid yet", path),
                  "check the host's clock, or issue a certificate valid from now");
  } else if (days < 0 || secs < 0) {
    *check = fail(setting, fmt::format("{} expired {} days ago", path, -days),
                  "issue a new certificate and restart the program");
  } else if (days < 30) {
    *check = warn(setting, fmt::format("{} expires in {} days", path, days),
                  "issue a new certificate before then and restart the program");
  } else {
    *check = ok(setting, fmt::format("{}: a PEM certificate valid for {} more days", path, days));
  }
  return cert;
}

}  // namespace

Check check_memlock(uint64_t bytes, std::string_view what, std::string_view setting, rlim_t limit,
                    bool pins) {
  const std::string name = "memlock";
  if (limit == RLIM_INFINITY) return ok(name, "locked-memory limit unlimited");
  if (limit >= bytes) {
    return ok(name, fmt::format("locked-memory limit {} covers the {} of {}", format_bytes(limit),
                                what, format_bytes(bytes)));
  }
  const std::string found = fmt::format("locked-memory limit {} is below the {} of {}",
                                        format_bytes(limit), what, format_bytes(bytes));
  const std::string how =
      "`ulimit -l unlimited` in the shell that starts the program, LimitMEMLOCK=infinity in its "
      "systemd unit (packaging/kv-server.service has it), or `<user> - memlock unlimited` in "
      "/etc/security/limits.conf";
  if (pins) {
    return fail(name, found + ": verbs and efa pin every registered page, so registration fails",
                fmt::format("raise it: {}; or lower --{}", how, setting));
  }
  return warn(name, found + " (the mock, tcp and shm do not pin pages; verbs and efa do)",
              "before moving to verbs or efa, raise it: " + how);
}

Check check_memory(uint64_t bytes, std::string_view what, std::string_view setting, uint64_t total,
                   uint64_t available) {
  const std::string name = "memory";
  if (total != 0 && bytes > total) {
    return fail(name,
                fmt::format("the {} of {} exceeds this host's memory ({})", what,
                            format_bytes(bytes), format_bytes(total)),
                fmt::format("lower --{} below {}", setting, format_bytes(total)));
  }
  if (available != 0 && bytes > available) {
    return warn(name,
                fmt::format("the {} of {} exceeds the memory available now ({} of {})", what,
                            format_bytes(bytes), format_bytes(available), format_bytes(total)),
                fmt::format("free memory, or lower --{}: a full {} would push the host into swap "
                            "or the OOM killer",
                            setting, what));
  }
  return ok(name, fmt::format("the {} of {} fits in the {} available ({} total)", what,
                              format_bytes(bytes), format_bytes(available), format_bytes(total)));
}

Check check_shm_space(uint64_t bytes, std::string_view what, std::string_view setting,
                      uint64_t free_bytes) {
  const std::string name = "dev-shm";
  if (bytes > free_bytes) {
    return fail(name,
                fmt::format("the mock keeps the {} ({}) in /dev/shm, which has {} free: "
                            "the process dies (SIGBUS) when it fills",
                            what, format_bytes(bytes), format_bytes(free_bytes)),
                fmt::format("grow /dev/shm (mount -o remount,size=<N>G /dev/shm; docker run "
                            "--shm-size) or lower --{}",
                            setting));
  }
  return ok(name, fmt::format("/dev/shm has {} free for the {} of {}", format_bytes(free_bytes),
                              what, format_bytes(bytes)));
}

Check check_providers(const TransportOptions& options) {
  const std::string name = "fabric-providers";
  if (Status s = fabric_api::load(); !s.is_ok()) {
    return fail(name, s.message(), "apt-get install libfabric1, or run with --mock true");
  }
  fi_info* hints = fabric_api::allocinfo();
  if (hints == nullptr) return fail(name, "fi_allocinfo failed", "free some memory and retry");
  hints->ep_attr->type = FI_EP_RDM;
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  // The modes the transport can honour (lib/transport/fabric): a provider needing more is unusable.
  hints->domain_attr->mr_mode =
      FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
  fi_info* list = nullptr;
  int rc = fabric_api::getinfo(FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION), nullptr, nullptr, 0,
                               hints, &list);
  fabric_api::freeinfo(hints);
  std::set<std::string> seen;
  std::string found;
  size_t rma = 0;
  for (const fi_info* i = rc == 0 ? list : nullptr; i != nullptr; i = i->next) {
    const std::string prov = i->fabric_attr->prov_name ? i->fabric_attr->prov_name : "?";
    if (!seen.insert(prov).second) continue;
    const bool writes = (i->caps & FI_RMA) && (i->caps & FI_WRITE) && (i->caps & FI_REMOTE_WRITE);
    rma += writes;
    found +=
        fmt::format("{}{} ({}, mr_mode {})", found.empty() ? "" : ", ", prov,
                    writes ? "RMA write" : "no RMA write", mr_mode_text(i->domain_attr->mr_mode));
  }
  if (list) fabric_api::freeinfo(list);
  if (rma > 0) return ok(name, "RDM providers: " + found);
  const std::string detail =
      rc != 0 ? fmt::format("fi_getinfo found no RDM provider ({})", fabric_api::strerror(-rc))
              : "no RDM provider with RMA write: " + found;
  const std::string fix =
      "install libfabric1 with an RMA provider (fi_info -t FI_EP_RDM -c FI_RMA lists them; "
      "verbs needs rdma-core and ibverbs-providers)";
  if (options.mock) return warn(name, detail + " (the mock needs none)", fix);
  return fail(name, detail, fix + ", or run with --mock true (one host only)");
}

Check check_listen(const std::string& listen_addr) {
  const std::string name = "listen-port";
  const size_t colon = listen_addr.rfind(':');
  std::string host = listen_addr.substr(0, colon);
  const std::string port = colon == std::string::npos ? "" : listen_addr.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (port == "0") return ok(name, fmt::format("{}: port 0, a free port is picked", listen_addr));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res)) {
    return fail(name, fmt::format("{}: cannot resolve: {}", listen_addr, gai_strerror(rc)),
                "give --listen-addr as host:port with a host name or address of this machine");
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(res, &freeaddrinfo);
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;  // e.g. IPv6 off on this host: gRPC skips it too
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as gRPC: TIME_WAIT is no user
    const int rc = ::bind(fd, a->ai_addr, a->ai_addrlen);
    const int err = errno;
    ::close(fd);
    if (rc == 0) continue;
    if (err == EADDRINUSE) {
      return fail(name, fmt::format("{}: port {} is in use", listen_addr, port),
                  fmt::format("stop what listens there (ss -ltnp 'sport = :{}' names it) or pick "
                              "another port in --listen-addr",
                              port));
    }
    if (err == EACCES) {
      return fail(name, fmt::format("{}: binding port {} is not permitted", listen_addr, port),
                  "use a port from 1024 up, or give the program CAP_NET_BIND_SERVICE");
    }
    if (err == EADDRNOTAVAIL) {
      return fail(name, fmt::format("{}: {} is not an address of this host", listen_addr, host),
                  "use one of this host's addresses (ip -br addr), 0.0.0.0 or localhost");
    }
    return fail(name, fmt::format("{}: bind failed: {}", listen_addr, std::strerror(err)),
                "check --listen-addr");
  }
  return ok(name, fmt::format("{}: port {} is free", listen_addr, port));
}

std::vector<Check> check_tls(const SecurityOptions& s, bool server) {
  std::vector<Check> out;
  if (s.tls_cert.empty() && s.tls_key.empty() && s.tls_ca.empty()) {
    out.push_back(ok("tls",
                     "off: gRPC control messages travel in plaintext (values cross the "
                     "transport unencrypted in any case: keep the fabric isolated)"));
    return out;
  }
  if (s.tls_cert.empty() != s.tls_key.empty()) {
    out.push_back(fail("tls", "only one of --tls-cert and --tls-key is given",
                       "give both: the certificate and the private key it was issued for"));
  }
  if (server && s.tls_cert.empty() && !s.tls_ca.empty()) {
    out.push_back(fail("tls",
                       "--tls-ca without --tls-cert / --tls-key: the server cannot "
                       "require client certificates without TLS of its own",
                       "give the server's --tls-cert and --tls-key too, or drop --tls-ca"));
  }
  std::unique_ptr<X509, X509Free> cert;
  if (!s.tls_cert.empty()) {
    Check c;
    cert = load_cert(s.tls_cert, "tls-cert", &c);
    out.push_back(std::move(c));
  }
  if (!s.tls_ca.empty()) {
    Check c;
    load_cert(s.tls_ca, "tls-ca", &c);
    out.push_back(std::move(c));
  }
  if (!s.tls_key.empty()) {
    Check c;
    File f = open_pem(s.tls_key, "tls-key", &c);
    std::unique_ptr<EVP_PKEY, KeyFree> key;
    if (f) {
      // No password callback: gRPC cannot read an encrypted key either.
      key.reset(PEM_read_PrivateKey(
          f.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
      if (!key) {
        c = fail("tls-key", fmt::format("{} holds no unencrypted PEM private key", s.tls_key),
                 "give --tls-key the key in PEM without a passphrase (openssl pkey -in KEY -out "
                 "KEY.plain)");
      } else if (cert && X509_check_private_key(cert.get(), key.get()) != 1) {
        c = fail("tls-key", fmt::format("{} is not the key of {}", s.tls_key, s.tls_cert),
                 "give the private key this certificate was issued for (the public keys differ)");
      } else {
        c = ok("tls-key", fmt::format("{}: a PEM private key{}", s.tls_key,
                                      cert ? ", matching --tls-cert" : ""));
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace kvrdma::tools
