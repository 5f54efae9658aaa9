#include "common/units.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>

namespace kvrdma {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

Result<uint64_t> parse_uint(std::string_view text) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("'{}' is not a non-negative integer", text));
  }
  return v;
}

Result<uint64_t> parse_bytes(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  auto bad = [&] {
    return Status(Code::kInvalidArgument,
                  fmt::format("'{}' is not a size; use bytes or a suffix K, M, G (e.g. 64K, 1MiB)",
                              text));
  };
  if (digits == 0) return bad();
  auto number = parse_uint(text.substr(0, digits));
  if (!number) return bad();
  std::string suffix = lower(text.substr(digits));
  uint64_t mult = 1;
  if (suffix.empty() || suffix == "b") mult = 1;
  else if (suffix == "k" || suffix == "kb" || suffix == "kib") mult = 1ull << 10;
  else if (suffix == "m" || suffix == "mb" || suffix == "mib") mult = 1ull << 20;
  else if (suffix == "g" || suffix == "gb" || suffix == "gib") mult = 1ull << 30;
  else return bad();
  if (*number > std::numeric_limits<uint64_t>::max() / mult) {
    return Status(Code::kInvalidArgument, fmt::format("size '{}' is too large", text));
  }
  return *number * mult;
}

Result<bool> parse_bool(std::string_view text) {
  std::string s = lower(text);
  if (s == "true" || s == "1" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "0" || s == "no" || s == "off") return false;
  return Status(Code::kInvalidArgument,
                fmt::format("'{}' is not a boolean; use true or false", text));
}

std::string format_bytes(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  if (bytes < (1ull << 20)) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  if (bytes < (1ull << 30)) return fmt::format("{:.1f} MiB", bytes / 1048576.0);
  return fmt::format("{:.2f} GiB", bytes / 1073741824.0);
}

}  // namespace kvrdma
