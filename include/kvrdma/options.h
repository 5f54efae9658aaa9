// Settings of a kvrdma server and client. One table (settings()) names every setting with its
// type, default and description; the CLI flags, kvrdma_config_set and the README's list all come
// from it, so a setting is added in exactly one place (lib/common/settings.cc).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "kvrdma/export.h"
#include "kvrdma/status.h"

namespace kvrdma {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };
// How a log line is written: "[I hh:mm:ss.mmm] text", or one JSON object per line (time, level,
// message, and node / client / session where they apply) for log collectors.
enum class LogFormat { kText, kJson };
enum class Eviction { kLru, kNone };

// Which transport moves value bytes. Both ends must use the same one.
struct TransportOptions {
  bool mock = true;               // memcpy through shared memory (one host)
  std::string provider = "auto";  // libfabric: auto|efa|verbs|shm|tcp (when mock is false)
  std::string fabric_iface;       // network interface for tcp/verbs; empty: loopback/any
  uint32_t num_domains = 1;       // stripe large transfers over this many domains
  // Request channel (docs/design.md): small GET, get_many, PUT and DELETE ride the data plane.
  // The client offers one at Hello and the server accepts it only when both have this on.
  bool channel = true;
};

// Who may talk to whom on the control plane. RDMA traffic is neither encrypted nor authenticated
// by these: keep the fabric on an isolated network (README, Security).
struct SecurityOptions {
  // Shared secret: when the server has one, every RPC without exactly this token is
  // PERMISSION_DENIED; a client sends its token (if any) with every call. Empty: none.
  std::string auth_token;
  // PEM files. Server: tls_cert + tls_key turn TLS on; tls_ca then requires and verifies client
  // certificates signed by it. Client: tls_ca (or tls_cert) turns TLS on and verifies the server
  // against tls_ca (system roots when empty); tls_cert + tls_key present a client certificate.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
};

struct ServerOptions {
  std::string listen_addr = "localhost:50051";  // host:port; port 0 picks a free port
  uint64_t memory_bytes = 1024ull << 20;        // pool size
  uint32_t node_id = 0;
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kText;
  TransportOptions transport;
  // Values up to this many bytes ride inside the RPC; 0: by transport, each at its measured
  // crossover (GETs mock 32 KiB, shm 64 KiB, tcp 256 KiB; a single PUT, whose two-phase path
  // costs two more round trips, mock 64 KiB, shm 128 KiB, tcp 256 KiB; bench/README.md,
  // "Inline threshold"). A value set here holds for GETs and PUTs alike.
  uint64_t inline_threshold = 0;
  Eviction eviction = Eviction::kLru;
  uint64_t max_value_bytes = 0;  // 0: the pool size
  uint64_t max_key_bytes = 4096;
  uint64_t lease_ms = 30000;            // a silent session ends after this
  uint64_t reservation_ttl_ms = 30000;  // an uncommitted PUT reservation is freed after this
  uint64_t sweep_interval_ms = 1000;    // how often expired keys/sessions are reclaimed
  uint64_t max_sessions = 1024;         // Hello beyond this: RESOURCE_EXHAUSTED
  uint64_t max_inflight = 256;          // per session: GET transfers + open PUT reservations
  uint64_t max_message_bytes = 0;       // gRPC message limit; 0: 2 x inline threshold + 4 MiB
  SecurityOptions security;
  // Cluster mode (docs/cluster.md): on when `cluster` is not empty.
  std::string cluster;            // cluster name: etcd keys under /kvrdma/<cluster>/
  std::string etcd_endpoints;     // comma-separated, e.g. http://127.0.0.1:2379
  std::string advertise_addr;     // host:port clients dial; empty: the bound address
  uint64_t node_lease_ms = 5000;  // a node silent this long is declared dead
  // host:port serving Prometheus text at /metrics (docs/metrics.md); empty: no endpoint.
  std::string metrics_addr;
  // Request channel: the channel thread polls this long after its last request before it
  // sleeps on the doorbell, microseconds.
  uint64_t poll_us = 50;
  uint64_t replicas = 1;  // copies per slot of a new cluster (1..5)
};

enum class ReadFrom { kPrimary, kAny, kNearest };

struct ClientOptions {
  std::string server_addr = "http://[::1]:50051";
  uint64_t client_id = 1;
  uint64_t buffer_bytes = 64ull << 20;  // registered receive buffer
  LogLevel log_level = LogLevel::kWarn;
  LogFormat log_format = LogFormat::kText;
  TransportOptions transport;
  uint64_t timeout_ms = 5000;  // deadline of each call
  SecurityOptions security;
  // GETs and get_many batches ride long-lived gRPC streams (no call set-up per request), one
  // request at a time per stream, up to this many streams per client; more concurrent ones, or
  // all when 0, use one unary call each.
  uint64_t get_streams = 16;
  // Cluster mode with replicas: where a GET goes (docs/cluster.md "Replicas").
  ReadFrom read_from = ReadFrom::kPrimary;
};

// Which programs a setting applies to.
enum SettingRole : unsigned { kServerSetting = 1, kClientSetting = 2 };

struct SettingInfo {
  const char* name;           // CLI flag without "--", also the kvrdma_config_set name
  const char* type;           // "string", "bool", "int", "bytes", "enum"
  const char* default_value;  // read from a default-constructed ServerOptions / ClientOptions
  const char* description;    // one line, for --help and the README
  unsigned roles;             // SettingRole bits
  const char* member;         // the ServerOptions / ClientOptions member it sets, e.g. "lease_ms"
  uint64_t min_value;         // "int" / "bytes": the accepted range, in the setting's unit
  uint64_t max_value;         // (MiB for "-mb" settings); 0 for other types
};

// Every setting, in the order --help shows them. The option structs above hold the defaults; the
// table holds each setting's range and help once.
KVRDMA_EXPORT std::span<const SettingInfo> settings();
// The row named `name`, or nullptr.
KVRDMA_EXPORT const SettingInfo* find_setting(std::string_view name);
// The description with the accepted range appended ("... [1 to 64]"), as --help shows it.
KVRDMA_EXPORT std::string setting_help(const SettingInfo& setting);

// Applies `name` = `value` (text as on the command line; booleans accept
// true/false/1/0/yes/no/on/off, sizes for "bytes" settings as 65536, 64K or 1.5M, MiB for "-mb").
// INVALID_ARGUMENT names the setting and the accepted values when either is wrong, and leaves
// `options` as it was; a setting of the other role is INVALID_ARGUMENT too.
KVRDMA_EXPORT Status apply_setting(ServerOptions& options, std::string_view name,
                                   std::string_view value);
KVRDMA_EXPORT Status apply_setting(ClientOptions& options, std::string_view name,
                                   std::string_view value);
// The current value of `name` in `options`, spelled as apply_setting reads it.
KVRDMA_EXPORT Result<std::string> setting_value(const ServerOptions& options,
                                                std::string_view name);
KVRDMA_EXPORT Result<std::string> setting_value(const ClientOptions& options,
                                                std::string_view name);

// How library errors name a setting: "ServerOptions::memory_bytes / memory-mb" (the C++ member,
// then the kvrdma_config_set name); the programs show the flag (--memory-mb) instead. `role` picks
// the struct for settings of both.
KVRDMA_EXPORT std::string option_name(std::string_view setting, unsigned role);

// Checks every member the settings table covers against the table's range and rules.
// INVALID_ARGUMENT names the member and the setting ("ServerOptions::lease_ms / lease-ms is 5,
// outside 100 to 86400000; ..."). The library does not call these itself (tests and embedders
// may use shorter times than the table allows); callers that take options from people should.
KVRDMA_EXPORT Status validate(const ServerOptions& options);
KVRDMA_EXPORT Status validate(const ClientOptions& options);

KVRDMA_EXPORT const char* log_level_name(LogLevel level);

}  // namespace kvrdma
