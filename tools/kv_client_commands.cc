// get / put / delete / stats / locate / cluster of kv-client.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "cli_common.h"
#include "kv_client.h"

namespace kvrdma::tools {
namespace {

// Writes all of `data` to `fd`, riding out short writes and EINTR.
bool write_all(int fd, const std::byte* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// The whole content of `fd` (a file or a pipe).
bool read_all(int fd, std::string& out) {
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out.append(buf, static_cast<size_t>(n));
  }
}

// kv-client shows a figure's value as text: numbers in decimal, an empty string as "-".
std::string table_value(const StatInfo& field, const ServerStats& stats) {
  if (field.text == nullptr) return std::to_string(field.number(stats));
  const std::string& text = field.text(stats);
  return text.empty() ? "-" : text;
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

int command_get(Client& client, std::string_view key, const std::string& output_path,
                std::string_view prefix) {
  auto value = client.get(key);
  if (!value) return report_error(prefix, value.status());
  if (output_path.empty() || output_path == "-") {
    if (!write_all(STDOUT_FILENO, value->data(), value->size())) {
      return report_error(prefix, Status(Code::kInternal,
                                         fmt::format("writing {} bytes to stdout failed: {}",
                                                     value->size(), std::strerror(errno))));
    }
    return kExitOk;
  }
  const int fd = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const bool ok = fd >= 0 && write_all(fd, value->data(), value->size());
  const int err = errno;
  if (fd >= 0 && ::close(fd) != 0 && ok) {
    return report_error(prefix,
                        Status(Code::kInternal, fmt::format("closing '{}' failed: {}", output_path,
                                                            std::strerror(errno))));
  }
  if (!ok) {
    return report_error(prefix, Status(Code::kInternal,
                                       fmt::format("cannot write '{}': {}; check the path and "
                                                   "its permissions",
                                                   output_path, std::strerror(err))));
  }
  return kExitOk;
}

int command_put(Client& client, std::string_view key, std::string_view value,
                const std::string& file_path, uint64_t ttl_ms, std::string_view prefix) {
  std::string contents;
  if (!file_path.empty()) {
    const bool from_stdin = file_path == "-";
    const int fd = from_stdin ? STDIN_FILENO : ::open(file_path.c_str(), O_RDONLY | O_CLOEXEC);
    const bool ok = fd >= 0 && read_all(fd, contents);
    const int err = errno;
    if (fd >= 0 && !from_stdin) ::close(fd);
    if (!ok) {
      return report_error(prefix, Status(Code::kInvalidArgument,
                                         fmt::format("cannot read '{}': {}",
                                                     from_stdin ? "stdin" : file_path,
                                                     std::strerror(err))));
    }
    value = contents;
  }
  return report_error_if(prefix, client.put(key, value, ttl_ms));
}

int command_delete(Client& client, std::string_view key, std::string_view prefix) {
  return report_error_if(prefix, client.del(key));
}

int command_stats(Client& client, bool json, std::string_view prefix) {
  auto stats = client.stats();
  if (!stats) return report_error(prefix, stats.status());
  const std::string text = json ? stats_json(*stats) + "\n" : stats_table(*stats);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return kExitOk;
}

int command_locate(Client& client, std::string_view key, bool json, std::string_view prefix) {
  auto loc = client.locate(key);
  if (!loc) return report_error(prefix, loc.status());
  const std::string text = json ? location_json(*loc) + "\n" : location_table(*loc);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return kExitOk;
}

int command_cluster(Client& client, bool json, std::string_view prefix) {
  auto info = client.cluster();
  if (!info) return report_error(prefix, info.status());
  const std::string text = json ? cluster_json(*info) + "\n" : cluster_table(*info);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return kExitOk;
}

std::string location_table(const ValueLocation& l) {
  std::string out;
  out += fmt::format("{:<20}{}\n", "node_id", l.node_id);
  out += fmt::format("{:<20}{}\n", "node_address", l.node_address);
  out += fmt::format("{:<20}{}\n", "region", l.region_descriptor);
  out += fmt::format("{:<20}{}\n", "offset", l.offset);
  out += fmt::format("{:<20}{}\n", "length", l.length);
  out += fmt::format("{:<20}{}\n", "epoch", l.epoch);
  out += fmt::format("{:<20}{}\n", "slot", l.slot);
  return out;
}

std::string location_json(const ValueLocation& l) {
  return fmt::format(
      "{{\"node_id\": {}, \"node_address\": \"{}\", \"region\": \"{}\", "
      "\"offset\": {}, \"length\": {}, \"epoch\": {}, \"slot\": {}}}",
      l.node_id, json_escape(l.node_address), json_escape(l.region_descriptor), l.offset, l.length,
      l.epoch, l.slot);
}

std::string cluster_table(const ClusterInfo& c) {
  std::string out =
      fmt::format("cluster {}  epoch {}  controller {}  moving slots {}\n",
                  c.cluster.empty() ? "-" : c.cluster, c.epoch,
                  c.has_controller ? std::to_string(c.controller) : "-", c.moving_slots);
  out += fmt::format("{:<6}{:<24}{:<9}{:>7}{:>12}{:>14}{:>24}\n", "id", "address", "state", "slots",
                     "keys", "value_bytes", "pool used/total");
  for (const ClusterNodeStatus& n : c.nodes) {
    if (!n.reachable) {
      out += fmt::format("{:<6}{:<24}{:<9}{:>7}  unreachable: {}\n", n.id, n.address, n.state,
                         n.slots, n.error);
      continue;
    }
    out += fmt::format("{:<6}{:<24}{:<9}{:>7}{:>12}{:>14}{:>24}\n", n.id, n.address, n.state,
                       n.slots, n.keys, n.value_bytes,
                       format_bytes(n.pool_used_bytes) + " / " + format_bytes(n.pool_bytes));
  }
  return out;
}

std::string cluster_json(const ClusterInfo& c) {
  std::string out = fmt::format(
      "{{\"cluster\": \"{}\", \"epoch\": {}, \"controller\": {}, "
      "\"moving_slots\": {}, \"nodes\": [",
      json_escape(c.cluster), c.epoch, c.has_controller ? std::to_string(c.controller) : "null",
      c.moving_slots);
  for (size_t i = 0; i < c.nodes.size(); ++i) {
    const ClusterNodeStatus& n = c.nodes[i];
    out += fmt::format(
        "{}{{\"id\": {}, \"address\": \"{}\", \"state\": \"{}\", \"slots\": {}, "
        "\"reachable\": {}",
        i == 0 ? "" : ", ", n.id, json_escape(n.address), json_escape(n.state), n.slots,
        n.reachable ? "true" : "false");
    if (n.reachable) {
      out += fmt::format(
          ", \"keys\": {}, \"value_bytes\": {}, \"pool_used_bytes\": {}, "
          "\"pool_bytes\": {}}}",
          n.keys, n.value_bytes, n.pool_used_bytes, n.pool_bytes);
    } else {
      out += fmt::format(", \"error\": \"{}\"}}", json_escape(n.error));
    }
  }
  return out + "]}";
}

// Both list the identity figures first, then the gauges and counters, in table order; the
// state version is for waiting (Client::stats_after), not for people.
std::string stats_table(const ServerStats& stats) {
  std::string out;
  for (const StatInfo& field : stats_fields()) {
    if (field.role == StatRole::kIdentity) {
      out += fmt::format("{:<26}{}\n", field.name, table_value(field, stats));
    }
  }
  for (const StatInfo& field : stats_fields()) {
    if (field.role == StatRole::kIdentity || field.role == StatRole::kVersion) continue;
    const uint64_t v = field.number(stats);
    if (field.unit == StatUnit::kBytes && v >= 1024) {
      out += fmt::format("{:<26}{} ({})\n", field.name, v, format_bytes(v));
    } else {
      out += fmt::format("{:<26}{}\n", field.name, v);
    }
  }
  return out;
}

std::string stats_json(const ServerStats& stats) {
  std::string out;
  for (const StatInfo& field : stats_fields()) {
    if (field.role != StatRole::kIdentity) continue;
    out += out.empty() ? "{" : ", ";
    if (field.text != nullptr) {
      out += fmt::format("\"{}\": \"{}\"", field.name, json_escape(field.text(stats)));
    } else {
      out += fmt::format("\"{}\": {}", field.name, field.number(stats));
    }
  }
  for (const StatInfo& field : stats_fields()) {
    if (field.role == StatRole::kIdentity || field.role == StatRole::kVersion) continue;
    out += fmt::format(", \"{}\": {}", field.name, field.number(stats));
  }
  return out + "}";
}

bool parse_ttl_seconds(std::string_view text, uint64_t& ttl_ms) {
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const double seconds = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || errno != 0 || !std::isfinite(seconds) ||
      seconds < 0 || seconds > 1e12) {
    return false;
  }
  ttl_ms = static_cast<uint64_t>(std::llround(seconds * 1000));
  if (seconds > 0 && ttl_ms == 0) ttl_ms = 1;
  return true;
}

}  // namespace kvrdma::tools
