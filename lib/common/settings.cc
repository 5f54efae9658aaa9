// The one table of settings. Each row names a setting, the option member it sets (server, client
// or both), its accepted range and its help; tools/ builds CLI flags from it and capi/ feeds
// kvrdma_config_set through it. Defaults are not written here: they are read from a
// default-constructed ServerOptions / ClientOptions, so the struct is the one place a default
// lives and the table the one place a range lives.
#include <fmt/format.h>

#include <cctype>
#include <deque>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "common/units.h"
#include "kvrdma/options.h"

namespace kvrdma {
namespace {

// A pointer to the option member a setting reads and writes.
using FieldRef = std::variant<std::string*, bool*, uint64_t*, uint32_t*, LogLevel*, LogFormat*,
                              Eviction*, ReadFrom*>;
using ServerField = FieldRef (*)(ServerOptions&);
using ClientField = FieldRef (*)(ClientOptions&);
// Extra rule for a string setting's value; OK when it is acceptable.
using Check = Status (*)(std::string_view name, std::string_view value);

struct Row {
  const char* name;    // CLI flag without "--", also the kvrdma_config_set name
  const char* type;    // "string", "bool", "int", "bytes" (a size: 64K, 1.5M), "enum"
  const char* member;  // the option member, e.g. "lease_ms" or "transport.mock"
  ServerField server;  // nullptr: not a server setting
  ClientField client;  // nullptr: not a client setting
  uint64_t lo, hi;     // "int" / "bytes": accepted values, in the setting's unit
  uint64_t scale;      // bytes per unit of the setting (MiB for "-mb" settings), else 1
  Check check;         // "string" / "enum": nullptr accepts any value
  const char* description;
};

// The row macros spell the member once: its name for messages, its accessor for each role.
// clang-format reads "#m" at the start of a macro body as a directive: keep it away.
// clang-format off
#define KVRDMA_SERVER(m) #m, [](ServerOptions& o) -> FieldRef { return &o.m; }, nullptr
#define KVRDMA_CLIENT(m) #m, nullptr, [](ClientOptions& o) -> FieldRef { return &o.m; }
#define KVRDMA_BOTH(m)                                   \
  #m, [](ServerOptions& o) -> FieldRef { return &o.m; }, \
      [](ClientOptions& o) -> FieldRef { return &o.m; }
// clang-format on

Status bad_value(std::string_view name, std::string_view value, std::string_view expected) {
  return Status(Code::kInvalidArgument,
                fmt::format("setting '{}': '{}' is not valid; expected {}", name, value, expected));
}

Status check_host_port(std::string_view name, std::string_view value) {
  if (value.empty() || value.find(':') == std::string_view::npos) {
    return bad_value(name, value, "host:port, e.g. 127.0.0.1:50051");
  }
  return Status();
}

Status check_server_addr(std::string_view name, std::string_view value) {
  if (value.empty()) return bad_value(name, value, "host:port or http://host:port");
  return Status();
}

Status check_advertise(std::string_view name, std::string_view value) {
  if (!value.empty() && (value.find(':') == std::string_view::npos || value.back() == ':')) {
    return bad_value(name, value, "host:port, e.g. 10.0.0.5:50051 (empty: the listen address)");
  }
  return Status();
}

Status check_metrics_addr(std::string_view name, std::string_view value) {
  const size_t colon = value.rfind(':');
  auto port = parse_uint(colon == std::string_view::npos ? "" : value.substr(colon + 1));
  if (!value.empty() && (colon == 0 || !port || *port > 65535)) {
    return bad_value(name, value, "host:port, e.g. 127.0.0.1:9100 (empty: no endpoint)");
  }
  return Status();
}

Status check_token(std::string_view name, std::string_view value) {
  if (value.size() > 4096) return bad_value(name, "(hidden)", "at most 4096 characters");
  for (char c : value) {
    // gRPC metadata values must be printable ASCII.
    if (c < 0x20 || c > 0x7e) return bad_value(name, "(hidden)", "printable ASCII characters");
  }
  return Status();
}

Status check_provider(std::string_view name, std::string_view value) {
  for (const char* p : {"auto", "efa", "verbs", "shm", "tcp"}) {
    if (value == p) return Status();
  }
  return bad_value(name, value, "auto, efa, verbs, shm or tcp");
}

Status check_cluster(std::string_view name, std::string_view value) {
  if (value.size() > 64) return bad_value(name, value, "a name of at most 64 characters");
  for (char c : value) {
    // The name becomes part of etcd keys: keep it to characters that need no escaping.
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return bad_value(name, value, "letters, digits, '-', '_' and '.' only");
    }
  }
  return Status();
}

Status check_endpoints(std::string_view name, std::string_view value) {
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
  return Status();
}

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kMaxMb = 1ull << 20;  // 1 TiB
constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kDay = 86'400'000;

const Row kRows[] = {
    {"listen-addr", "string", KVRDMA_SERVER(listen_addr), 0, 0, 1, check_host_port,
     "host:port the server listens on (port 0 picks a free one)"},
    {"server-addr", "string", KVRDMA_CLIENT(server_addr), 0, 0, 1, check_server_addr,
     "server to connect to, with or without http://; for a cluster, several separated by commas "
     "(the first that answers hands out the map)"},
    {"memory-mb", "int", KVRDMA_SERVER(memory_bytes), 1, kMaxMb, kMiB, nullptr,
     "size of the server's memory pool, MiB"},
    {"node-id", "int", KVRDMA_SERVER(node_id), 0, kMaxU32, 1, nullptr,
     "this server's node id in a cluster"},
    {"client-id", "int", KVRDMA_CLIENT(client_id), 0, kMaxU64, 1, nullptr,
     "this client's id, reported to the server"},
    {"buffer-mb", "int", KVRDMA_CLIENT(buffer_bytes), 1, kMaxMb, kMiB, nullptr,
     "size of the client's registered receive buffer, MiB"},
    {"log-level", "enum", KVRDMA_BOTH(log_level), 0, 0, 1, nullptr, "trace|debug|info|warn|error"},
    {"log-format", "enum", KVRDMA_BOTH(log_format), 0, 0, 1, nullptr,
     "text: '[I hh:mm:ss.mmm] message' lines; json: one JSON object per line (time, level, "
     "message, node / client / session where they apply)"},
    {"mock", "bool", KVRDMA_BOTH(transport.mock), 0, 0, 1, nullptr,
     "memcpy transport through shared memory (one host); false: libfabric"},
    {"provider", "enum", KVRDMA_BOTH(transport.provider), 0, 0, 1, check_provider,
     "libfabric provider: auto|efa|verbs|shm|tcp"},
    {"fabric-iface", "string", KVRDMA_BOTH(transport.fabric_iface), 0, 0, 1, nullptr,
     "network interface for libfabric tcp/verbs (empty: any)"},
    {"num-domains", "int", KVRDMA_BOTH(transport.num_domains), 1, 64, 1, nullptr,
     "stripe large transfers over this many libfabric domains"},
    {"inline-threshold", "bytes", KVRDMA_SERVER(inline_threshold), 0, 64 * kMiB, 1, nullptr,
     "values up to this many bytes ride inside the RPC, larger ones are written by the transport; "
     "0: by transport, where each is fastest (GETs: mock 32 KiB, shm 64 KiB, tcp 256 KiB; a "
     "single PUT: mock 64 KiB, shm 128 KiB, tcp 256 KiB)"},
    {"eviction", "enum", KVRDMA_SERVER(eviction), 0, 0, 1, nullptr,
     "lru: evict least recently used when full; none: refuse"},
    {"max-value-mb", "int", KVRDMA_SERVER(max_value_bytes), 0, kMaxMb, kMiB, nullptr,
     "largest value accepted, MiB (0: the pool size)"},
    {"max-key-bytes", "int", KVRDMA_SERVER(max_key_bytes), 1, kMiB, 1, nullptr,
     "longest key accepted, bytes"},
    {"lease-ms", "int", KVRDMA_SERVER(lease_ms), 100, kDay, 1, nullptr,
     "a client session silent for this long ends"},
    {"reservation-ttl-ms", "int", KVRDMA_SERVER(reservation_ttl_ms), 100, kDay, 1, nullptr,
     "an uncommitted PUT reservation is freed after this"},
    {"sweep-interval-ms", "int", KVRDMA_SERVER(sweep_interval_ms), 10, 3'600'000, 1, nullptr,
     "how often expired keys and sessions are reclaimed"},
    {"max-sessions", "int", KVRDMA_SERVER(max_sessions), 1, 1'000'000, 1, nullptr,
     "client sessions at once; more get RESOURCE_EXHAUSTED"},
    {"max-inflight", "int", KVRDMA_SERVER(max_inflight), 1, 1'000'000, 1, nullptr,
     "per session: GETs being pushed plus open two-phase PUTs"},
    {"max-message-mb", "int", KVRDMA_SERVER(max_message_bytes), 0, 2047, kMiB, nullptr,
     "largest gRPC message, MiB (0: 2 x inline threshold + 4 MiB)"},
    {"timeout-ms", "int", KVRDMA_CLIENT(timeout_ms), 1, kDay, 1, nullptr, "deadline of each call"},
    {"get-streams", "int", KVRDMA_CLIENT(get_streams), 0, 1024, 1, nullptr,
     "GETs and get_many batches ride long-lived gRPC streams, at most this many per client (more "
     "concurrent ones go as single calls); 0: always single calls"},
    {"channel", "bool", KVRDMA_BOTH(transport.channel), 0, 0, 1, nullptr,
     "small GET, get_many, PUT and DELETE ride the request channel on the data plane (offered at "
     "Hello; gRPC when either side says false)"},
    {"poll-us", "int", KVRDMA_SERVER(poll_us), 0, 1'000'000, 1, nullptr,
     "request channel: the server polls this long for new requests before it sleeps on the "
     "doorbell, microseconds"},
    {"auth-token", "string", KVRDMA_BOTH(security.auth_token), 0, 0, 1, check_token,
     "shared secret every RPC must carry (programs also read KVRDMA_AUTH_TOKEN); empty: none"},
    {"tls-cert", "string", KVRDMA_BOTH(security.tls_cert), 0, 0, 1, nullptr,
     "PEM certificate: the server's (turns TLS on), or the client's own for mutual TLS"},
    {"tls-key", "string", KVRDMA_BOTH(security.tls_key), 0, 0, 1, nullptr,
     "PEM private key of --tls-cert"},
    {"tls-ca", "string", KVRDMA_BOTH(security.tls_ca), 0, 0, 1, nullptr,
     "PEM CA: the client verifies the server with it (turns TLS on); the server requires client "
     "certificates signed by it"},
    {"cluster", "string", KVRDMA_SERVER(cluster), 0, 0, 1, check_cluster,
     "cluster name: join this cluster (etcd keys under /kvrdma/<name>/; letters, digits, '-', '_', "
     "'.'); empty: a single node, no cluster mode"},
    {"etcd-endpoints", "string", KVRDMA_SERVER(etcd_endpoints), 0, 0, 1, check_endpoints,
     "cluster mode: etcd endpoints, comma-separated, e.g. "
     "http://127.0.0.1:2379,http://10.0.0.2:2379"},
    {"advertise-addr", "string", KVRDMA_SERVER(advertise_addr), 0, 0, 1, check_advertise,
     "cluster mode: host:port other nodes and clients dial to reach this server (empty: the "
     "address it listens on)"},
    {"node-lease-ms", "int", KVRDMA_SERVER(node_lease_ms), 1000, 600'000, 1, nullptr,
     "cluster mode: a node whose etcd lease is not renewed for this long is declared dead and its "
     "slots reassigned (etcd counts whole seconds)"},
    {"replicas", "int", KVRDMA_SERVER(replicas), 1, 5, 1, nullptr,
     "cluster mode: copies of each slot in a new cluster, the primary included (1-5); a PUT is "
     "acknowledged once every live copy holds it"},
    {"read-from", "enum", KVRDMA_CLIENT(read_from), 0, 0, 1, nullptr,
     "cluster mode with replicas: where a GET goes: primary, any (the primary or a filled "
     "replica, at random), nearest (a copy on this host first)"},
    {"metrics-addr", "string", KVRDMA_SERVER(metrics_addr), 0, 0, 1, check_metrics_addr,
     "host:port serving Prometheus metrics at /metrics (port 0 picks a free one; "
     "docs/metrics.md); empty: no metrics endpoint"},
};

#undef KVRDMA_SERVER
#undef KVRDMA_CLIENT
#undef KVRDMA_BOTH

const Row* find_row(std::string_view name) {
  for (const Row& r : kRows) {
    if (name == r.name) return &r;
  }
  return nullptr;
}

bool numeric(const Row& r) {
  return std::string_view(r.type) == "int" || std::string_view(r.type) == "bytes";
}

// The value of `field` as the setting spells it (MiB for "-mb" settings).
std::string text_of(const Row& r, const FieldRef& field) {
  struct Visit {
    const Row& r;
    std::string operator()(std::string* v) const { return *v; }
    std::string operator()(bool* v) const { return *v ? "true" : "false"; }
    std::string operator()(uint64_t* v) const { return std::to_string(*v / r.scale); }
    std::string operator()(uint32_t* v) const { return std::to_string(*v / r.scale); }
    std::string operator()(LogLevel* v) const { return log_level_name(*v); }
    std::string operator()(LogFormat* v) const { return *v == LogFormat::kJson ? "json" : "text"; }
    std::string operator()(Eviction* v) const { return *v == Eviction::kLru ? "lru" : "none"; }
    std::string operator()(ReadFrom* v) const {
      return *v == ReadFrom::kAny ? "any" : *v == ReadFrom::kNearest ? "nearest" : "primary";
    }
  };
  return std::visit(Visit{r}, field);
}

Result<LogLevel> parse_level(std::string_view name, std::string_view value) {
  for (LogLevel l :
       {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (value == log_level_name(l)) return l;
  }
  return bad_value(name, value, "trace, debug, info, warn or error");
}

Result<uint64_t> parse_number(const Row& r, std::string_view value) {
  const bool bytes = std::string_view(r.type) == "bytes";
  auto v = bytes ? parse_bytes(value) : parse_uint(value);
  if (!v || *v < r.lo || *v > r.hi) {
    return bad_value(r.name, value,
                     bytes ? fmt::format("a size from {} to {}, e.g. 65536, 64K or 1.5M",
                                         format_bytes(r.lo), format_bytes(r.hi))
                           : fmt::format("an integer from {} to {}", r.lo, r.hi));
  }
  return *v * r.scale;
}

// Parses `value` by the row's rules and stores it in `field`; leaves it as it was on error.
Status set(const Row& r, const FieldRef& field, std::string_view value) {
  if (r.check != nullptr) KVRDMA_RETURN_IF_ERROR(r.check(r.name, value));
  if (auto* s = std::get_if<std::string*>(&field)) {
    **s = std::string(value);
  } else if (auto* b = std::get_if<bool*>(&field)) {
    auto v = parse_bool(value);
    if (!v) return bad_value(r.name, value, "true or false");
    **b = *v;
  } else if (auto* l = std::get_if<LogLevel*>(&field)) {
    auto v = parse_level(r.name, value);
    if (!v) return v.status();
    **l = *v;
  } else if (auto* f = std::get_if<LogFormat*>(&field)) {
    if (value != "text" && value != "json") return bad_value(r.name, value, "text or json");
    **f = value == "json" ? LogFormat::kJson : LogFormat::kText;
  } else if (auto* rf = std::get_if<ReadFrom*>(&field)) {
    if (value == "primary") **rf = ReadFrom::kPrimary;
    else if (value == "any") **rf = ReadFrom::kAny;
    else if (value == "nearest") **rf = ReadFrom::kNearest;
    else return bad_value(r.name, value, "primary, any or nearest");
  } else if (auto* e = std::get_if<Eviction*>(&field)) {
    if (value != "lru" && value != "none") return bad_value(r.name, value, "lru or none");
    **e = value == "lru" ? Eviction::kLru : Eviction::kNone;
  } else {
    auto v = parse_number(r, value);
    if (!v) return v.status();
    if (auto* u = std::get_if<uint64_t*>(&field)) **u = *v;
    if (auto* u = std::get_if<uint32_t*>(&field)) **u = static_cast<uint32_t>(*v);  // hi fits
  }
  return Status();
}

Status wrong_role(const Row* r, std::string_view name) {
  if (r != nullptr) {
    return Status(Code::kInvalidArgument, fmt::format("setting '{}' applies to the {} only", name,
                                                      r->server != nullptr ? "server" : "client"));
  }
  return Status(Code::kInvalidArgument,
                fmt::format("unknown setting '{}'; see kv-server --help or kv-client --help",
                            name));
}

// Checks every member of `o` a row of its role sets against that row's rules. `type` names the
// struct in the message ("ServerOptions"), so a C++ caller sees the member it set.
template <typename Options>
Status validate_all(Options& o, const char* type, auto accessor) {
  for (const Row& r : kRows) {
    auto get = accessor(r);
    if (get == nullptr) continue;
    const FieldRef field = get(o);
    if (numeric(r)) {
      const uint64_t v = std::holds_alternative<uint64_t*>(field) ? *std::get<uint64_t*>(field)
                                                                  : *std::get<uint32_t*>(field);
      // A caller may set any byte count, not only whole MiB: compare in bytes.
      const uint64_t lo = r.lo * r.scale;
      const uint64_t hi = r.hi > kMaxU64 / r.scale ? kMaxU64 : r.hi * r.scale;
      if (v < lo || v > hi) {
        return Status(Code::kInvalidArgument,
                      fmt::format("{}::{} / {} is {}, outside {} to {}{}; set it within that "
                                  "range",
                                  type, r.member, r.name, v, lo, hi, r.scale > 1 ? " bytes" : ""));
      }
    } else if (r.check != nullptr) {
      const std::string text = text_of(r, field);
      if (Status s = r.check(r.name, text); !s.is_ok()) {
        return s.with_context(fmt::format("{}::{} / {}", type, r.member, r.name));
      }
    }
  }
  return Status();
}

// SettingInfo rows with the defaults read from default-constructed options; built once.
struct Infos {
  std::vector<SettingInfo> rows;
  std::deque<std::string> texts;  // the default strings rows point into (stable addresses)
};

Infos make_infos() {
  Infos out;
  ServerOptions server;
  ClientOptions client;
  for (const Row& r : kRows) {
    std::string text;
    if (r.server != nullptr && r.client != nullptr) {
      const std::string s = text_of(r, r.server(server)), c = text_of(r, r.client(client));
      text = s == c ? s : fmt::format("{} (server), {} (client)", s, c);
    } else {
      text = r.server != nullptr ? text_of(r, r.server(server)) : text_of(r, r.client(client));
    }
    out.texts.push_back(std::move(text));
    const unsigned roles =
        (r.server != nullptr ? kServerSetting : 0u) | (r.client != nullptr ? kClientSetting : 0u);
    out.rows.push_back(SettingInfo{r.name, r.type, out.texts.back().c_str(), r.description, roles,
                                   r.member, r.lo, r.hi});
  }
  return out;
}

const Infos& infos() {
  static const Infos built = make_infos();  // thread-safe once; deque keeps the texts in place
  return built;
}

}  // namespace

std::span<const SettingInfo> settings() { return infos().rows; }

const SettingInfo* find_setting(std::string_view name) {
  for (const SettingInfo& s : settings()) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

std::string setting_help(const SettingInfo& s) {
  std::string help = s.description;
  const std::string_view type = s.type;
  if (type == "int") help += fmt::format(" [{} to {}]", s.min_value, s.max_value);
  if (type == "bytes") {
    help += fmt::format(" [{} to {}]", format_bytes(s.min_value), format_bytes(s.max_value));
  }
  return help;
}

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
  const Row* r = find_row(name);
  if (r == nullptr || r->server == nullptr) return wrong_role(r, name);
  return set(*r, r->server(o), value);
}

Status apply_setting(ClientOptions& o, std::string_view name, std::string_view value) {
  const Row* r = find_row(name);
  if (r == nullptr || r->client == nullptr) return wrong_role(r, name);
  return set(*r, r->client(o), value);
}

Result<std::string> setting_value(const ServerOptions& o, std::string_view name) {
  const Row* r = find_row(name);
  if (r == nullptr || r->server == nullptr) return wrong_role(r, name);
  ServerOptions copy = o;  // accessors hand out mutable pointers; read through a copy
  return text_of(*r, r->server(copy));
}

Result<std::string> setting_value(const ClientOptions& o, std::string_view name) {
  const Row* r = find_row(name);
  if (r == nullptr || r->client == nullptr) return wrong_role(r, name);
  ClientOptions copy = o;
  return text_of(*r, r->client(copy));
}

std::string option_name(std::string_view setting, unsigned role) {
  const Row* r = find_row(setting);
  if (r == nullptr) return std::string(setting);
  const bool server = (role & kServerSetting) != 0 && r->server != nullptr;
  return fmt::format("{}::{} / {}", server ? "ServerOptions" : "ClientOptions", r->member, r->name);
}

Status validate(const ServerOptions& o) {
  ServerOptions copy = o;
  return validate_all(copy, "ServerOptions", [](const Row& r) { return r.server; });
}

Status validate(const ClientOptions& o) {
  ClientOptions copy = o;
  return validate_all(copy, "ClientOptions", [](const Row& r) { return r.client; });
}

}  // namespace kvrdma
