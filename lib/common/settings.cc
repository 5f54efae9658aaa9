// The one table of settings. Each row names a setting and how to apply it to server and/or
// client options; tools/ builds CLI flags from it and capi/ feeds kvrdma_config_set through it.
#include <fmt/format.h>

#include <cctype>
#include <functional>
#include <limits>

#include "common/units.h"
#include "kvrdma/options.h"

namespace kvrdma {
namespace {

constexpr unsigned kBoth = kServerSetting | kClientSetting;

const SettingInfo kSettings[] = {
    {"listen-addr", "string", "localhost:50051",
     "host:port the server listens on (port 0 picks a free one)", kServerSetting},
    {"server-addr", "string", "http://[::1]:50051",
     "server to connect to, with or without http://; for a cluster, several separated by commas "
     "(the first that answers hands out the map)",
     kClientSetting},
    {"memory-mb", "int", "1024", "size of the server's memory pool, MiB", kServerSetting},
    {"node-id", "int", "0", "this server's node id in a cluster", kServerSetting},
    {"client-id", "int", "1", "this client's id, reported to the server", kClientSetting},
    {"buffer-mb", "int", "64", "size of the client's registered receive buffer, MiB",
     kClientSetting},
    {"log-level", "enum", "info (server), warn (client)", "trace|debug|info|warn|error", kBoth},
    {"mock", "bool", "true", "memcpy transport through shared memory (one host); false: libfabric",
     kBoth},
    {"provider", "enum", "auto", "libfabric provider: auto|efa|verbs|shm|tcp", kBoth},
    {"fabric-iface", "string", "", "network interface for libfabric tcp/verbs (empty: any)", kBoth},
    {"num-domains", "int", "1", "stripe large transfers over this many libfabric domains", kBoth},
    {"inline-threshold", "bytes", "65536", "values up to this many bytes ride inside the RPC",
     kServerSetting},
    {"eviction", "enum", "lru", "lru: evict least recently used when full; none: refuse",
     kServerSetting},
    {"max-value-mb", "int", "0", "largest value accepted, MiB (0: the pool size)", kServerSetting},
    {"max-key-bytes", "int", "4096", "longest key accepted, bytes", kServerSetting},
    {"lease-ms", "int", "30000", "a client session silent for this long ends", kServerSetting},
    {"reservation-ttl-ms", "int", "30000", "an uncommitted PUT reservation is freed after this",
     kServerSetting},
    {"sweep-interval-ms", "int", "1000", "how often expired keys and sessions are reclaimed",
     kServerSetting},
    {"max-sessions", "int", "1024", "client sessions at once; more get RESOURCE_EXHAUSTED",
     kServerSetting},
    {"max-inflight", "int", "256", "per session: GETs being pushed plus open two-phase PUTs",
     kServerSetting},
    {"max-message-mb", "int", "0", "largest gRPC message, MiB (0: 2 x inline threshold + 4 MiB)",
     kServerSetting},
    {"timeout-ms", "int", "5000", "deadline of each call", kClientSetting},
    {"get-streams", "int", "16", "GETs and get_many batches ride long-lived gRPC streams, at most "
     "this many per client (more concurrent ones go as single calls); 0: always single calls",
     kClientSetting},
    {"auth-token", "string", "", "shared secret every RPC must carry (programs also read "
     "KVRDMA_AUTH_TOKEN); empty: none", kBoth},
    {"tls-cert", "string", "", "PEM certificate: the server's (turns TLS on), or the client's own "
     "for mutual TLS", kBoth},
    {"tls-key", "string", "", "PEM private key of --tls-cert", kBoth},
    {"tls-ca", "string", "", "PEM CA: the client verifies the server with it (turns TLS on); the "
     "server requires client certificates signed by it", kBoth},
    {"cluster", "string", "", "cluster name: join this cluster (etcd keys under /kvrdma/<name>/; "
     "letters, digits, '-', '_', '.'); empty: a single node, no cluster mode", kServerSetting},
    {"etcd-endpoints", "string", "", "cluster mode: etcd endpoints, comma-separated, e.g. "
     "http://127.0.0.1:2379,http://10.0.0.2:2379", kServerSetting},
    {"advertise-addr", "string", "", "cluster mode: host:port other nodes and clients dial to "
     "reach this server (empty: the address it listens on)", kServerSetting},
    {"node-lease-ms", "int", "5000", "cluster mode: a node whose etcd lease is not renewed for "
     "this long is declared dead and its slots reassigned (etcd counts whole seconds)",
     kServerSetting},
    {"replicas", "int", "1", "cluster mode: copies of each slot in a new cluster, the primary "
     "included (1-5); a PUT is acknowledged once every live copy holds it", kServerSetting},
    {"read-from", "enum", "primary", "cluster mode with replicas: where a GET goes: primary, any "
     "(the primary or a filled replica, at random), nearest (a copy on this host first)",
     kClientSetting},
};

Status bad_value(std::string_view name, std::string_view value, std::string_view expected) {
  return Status(Code::kInvalidArgument,
                fmt::format("setting '{}': '{}' is not valid; expected {}", name, value, expected));
}

Result<uint64_t> uint_in(std::string_view name, std::string_view value, uint64_t lo, uint64_t hi) {
  auto v = parse_uint(value);
  if (!v || *v < lo || *v > hi) {
    return bad_value(name, value, fmt::format("an integer from {} to {}", lo, hi));
  }
  return *v;
}

Result<LogLevel> parse_level(std::string_view name, std::string_view value) {
  for (LogLevel l : {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn,
                     LogLevel::kError}) {
    if (value == log_level_name(l)) return l;
  }
  return bad_value(name, value, "trace, debug, info, warn or error");
}

// Settings both roles share. Returns nullopt-like OK-with-handled flag through `handled`.
Status apply_common(LogLevel& level, TransportOptions& t, SecurityOptions& sec,
                    std::string_view name, std::string_view value, bool& handled) {
  handled = true;
  if (name == "auth-token") {
    if (value.size() > 4096) return bad_value(name, "(hidden)", "at most 4096 characters");
    for (char c : value) {
      // gRPC metadata values must be printable ASCII.
      if (c < 0x20 || c > 0x7e) return bad_value(name, "(hidden)", "printable ASCII characters");
    }
    sec.auth_token = std::string(value);
  } else if (name == "tls-cert") {
    sec.tls_cert = std::string(value);
  } else if (name == "tls-key") {
    sec.tls_key = std::string(value);
  } else if (name == "tls-ca") {
    sec.tls_ca = std::string(value);
  } else if (name == "log-level") {
    auto l = parse_level(name, value);
    if (!l) return l.status();
    level = *l;
  } else if (name == "mock") {
    auto b = parse_bool(value);
    if (!b) return bad_value(name, value, "true or false");
    t.mock = *b;
  } else if (name == "provider") {
    if (value != "auto" && value != "efa" && value != "verbs" && value != "shm" && value != "tcp") {
      return bad_value(name, value, "auto, efa, verbs, shm or tcp");
    }
    t.provider = std::string(value);
  } else if (name == "fabric-iface") {
    t.fabric_iface = std::string(value);
  } else if (name == "num-domains") {
    auto v = uint_in(name, value, 1, 64);
    if (!v) return v.status();
    t.num_domains = static_cast<uint32_t>(*v);
  } else {
    handled = false;
  }
  return Status();
}

Status unknown(std::string_view name, unsigned role) {
  for (const auto& s : kSettings) {
    if (name == s.name) {
      return Status(Code::kInvalidArgument,
                    fmt::format("setting '{}' applies to the {} only", name,
                                (s.roles & kServerSetting) ? "server" : "client"));
    }
  }
  (void)role;
  return Status(Code::kInvalidArgument,
                fmt::format("unknown setting '{}'; see kv-server --help or kv-client --help", name));
}

constexpr uint64_t kMaxMb = 1ull << 20;  // 1 TiB

}  // namespace

std::span<const SettingInfo> settings() { return kSettings; }

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return "trace";
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

Status apply_setting(ServerOptions& o, std::string_view name, std::string_view value) {
  bool handled = false;
  KVRDMA_RETURN_IF_ERROR(apply_common(o.log_level, o.transport, o.security, name, value, handled));
  if (handled) return Status();
  if (name == "listen-addr") {
    if (value.empty() || value.find(':') == std::string_view::npos) {
      return bad_value(name, value, "host:port, e.g. 127.0.0.1:50051");
    }
    o.listen_addr = std::string(value);
    return Status();
  }
  if (name == "eviction") {
    if (value == "lru") o.eviction = Eviction::kLru;
    else if (value == "none") o.eviction = Eviction::kNone;
    else return bad_value(name, value, "lru or none");
    return Status();
  }
  if (name == "inline-threshold") {
    auto v = parse_bytes(value);
    if (!v || *v > (64ull << 20)) {
      return bad_value(name, value, "a size from 0 to 64 MiB, e.g. 65536, 64K or 1.5M");
    }
    o.inline_threshold = *v;
    return Status();
  }
  if (name == "cluster") {
    if (value.size() > 64) return bad_value(name, value, "a name of at most 64 characters");
    for (char c : value) {
      // The name becomes part of etcd keys: keep it to characters that need no escaping.
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
        return bad_value(name, value, "letters, digits, '-', '_' and '.' only");
      }
    }
    o.cluster = std::string(value);
    return Status();
  }
  if (name == "etcd-endpoints") {
    for (std::string_view rest = value; !rest.empty();) {
      size_t comma = rest.find(',');
      std::string_view one = rest.substr(0, comma);
      if (one.find(':') == std::string_view::npos) {
        return bad_value(name, value, "comma-separated host:port or http://host:port entries");
      }
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (comma != std::string_view::npos && rest.empty()) {
        return bad_value(name, value, "no empty entry after a comma");
      }
    }
    o.etcd_endpoints = std::string(value);
    return Status();
  }
  if (name == "advertise-addr") {
    if (!value.empty() && (value.find(':') == std::string_view::npos || value.back() == ':')) {
      return bad_value(name, value, "host:port, e.g. 10.0.0.5:50051 (empty: the listen address)");
    }
    o.advertise_addr = std::string(value);
    return Status();
  }
  struct UintField {
    const char* name;
    uint64_t* field;
    uint64_t lo, hi, scale;
  };
  uint64_t node_id = o.node_id;
  const UintField fields[] = {
      {"memory-mb", &o.memory_bytes, 1, kMaxMb, 1ull << 20},
      {"node-id", &node_id, 0, std::numeric_limits<uint32_t>::max(), 1},
      {"max-value-mb", &o.max_value_bytes, 0, kMaxMb, 1ull << 20},
      {"max-key-bytes", &o.max_key_bytes, 1, 1ull << 20, 1},
      {"lease-ms", &o.lease_ms, 100, 86'400'000, 1},
      {"reservation-ttl-ms", &o.reservation_ttl_ms, 100, 86'400'000, 1},
      {"sweep-interval-ms", &o.sweep_interval_ms, 10, 3'600'000, 1},
      {"max-sessions", &o.max_sessions, 1, 1'000'000, 1},
      {"max-inflight", &o.max_inflight, 1, 1'000'000, 1},
      {"max-message-mb", &o.max_message_bytes, 0, 2047, 1ull << 20},
      {"node-lease-ms", &o.node_lease_ms, 1000, 600'000, 1},
      {"replicas", &o.replicas, 1, 5, 1},
  };
  for (const auto& f : fields) {
    if (name != f.name) continue;
    auto v = uint_in(name, value, f.lo, f.hi);
    if (!v) return v.status();
    *f.field = *v * f.scale;
    o.node_id = static_cast<uint32_t>(node_id);
    return Status();
  }
  return unknown(name, kServerSetting);
}

Status apply_setting(ClientOptions& o, std::string_view name, std::string_view value) {
  bool handled = false;
  KVRDMA_RETURN_IF_ERROR(apply_common(o.log_level, o.transport, o.security, name, value, handled));
  if (handled) return Status();
  if (name == "server-addr") {
    if (value.empty()) return bad_value(name, value, "host:port or http://host:port");
    o.server_addr = std::string(value);
    return Status();
  }
  if (name == "client-id") {
    auto v = uint_in(name, value, 0, std::numeric_limits<uint64_t>::max());
    if (!v) return v.status();
    o.client_id = *v;
    return Status();
  }
  if (name == "buffer-mb") {
    auto v = uint_in(name, value, 1, kMaxMb);
    if (!v) return v.status();
    o.buffer_bytes = *v << 20;
    return Status();
  }
  if (name == "timeout-ms") {
    auto v = uint_in(name, value, 1, 86'400'000);
    if (!v) return v.status();
    o.timeout_ms = *v;
    return Status();
  }
  if (name == "read-from") {
    if (value == "primary") o.read_from = ReadFrom::kPrimary;
    else if (value == "any") o.read_from = ReadFrom::kAny;
    else if (value == "nearest") o.read_from = ReadFrom::kNearest;
    else return bad_value(name, value, "primary, any or nearest");
    return Status();
  }
  if (name == "get-streams") {
    auto v = uint_in(name, value, 0, 1024);
    if (!v) return v.status();
    o.get_streams = *v;
    return Status();
  }
  return unknown(name, kClientSetting);
}

}  // namespace kvrdma
