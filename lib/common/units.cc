#include "common/units.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <iterator>
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
    return Status(Code::kInvalidArgument, fmt::format("'{}' is not a non-negative integer", text));
  }
  return v;
}

Result<uint64_t> parse_bytes(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Status(Code::kInvalidArgument,
                  fmt::format("'{}' is not a size ({}); use bytes or a number with K, M, G or T "
                              "(binary multiples), e.g. 4096, 64K, 1.5MiB",
                              text, why));
  };
  auto digits_at = [&](size_t from) {
    size_t end = from;
    while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
    return end;
  };
  size_t pos = digits_at(0);
  if (pos == 0) return bad("it does not start with a digit");
  const std::string_view whole = text.substr(0, pos);
  std::string_view fraction;
  if (pos < text.size() && text[pos] == '.') {
    const size_t end = digits_at(pos + 1);
    if (end == pos + 1) return bad("no digit after '.'");
    fraction = text.substr(pos + 1, end - pos - 1);
    pos = end;
  }
  const bool spaced = pos < text.size() && text[pos] == ' ';
  if (spaced) ++pos;
  const std::string unit = lower(text.substr(pos));
  if (spaced && unit.empty()) return bad("a space but no unit after it");
  unsigned shift = 0;
  if (unit.empty() || unit == "b") {
    shift = 0;
  } else {
    static constexpr std::string_view kPrefixes = "kmgt";
    const size_t p = kPrefixes.find(unit[0]);
    const std::string_view rest = std::string_view(unit).substr(1);
    if (p == std::string_view::npos || !(rest.empty() || rest == "b" || rest == "ib")) {
      return bad(fmt::format("unknown unit '{}'", text.substr(pos)));
    }
    shift = 10 * static_cast<unsigned>(p + 1);
  }
  if (shift == 0 && !fraction.empty()) return bad("a fraction of a byte");

  const auto too_large = [&] {
    return Status(Code::kInvalidArgument,
                  fmt::format("size '{}' is too large; the limit is 2^64-1 bytes (16 EiB)", text));
  };
  auto number = parse_uint(whole);
  if (!number) return too_large();  // only digits here, so from_chars failed by range
  if (*number > (std::numeric_limits<uint64_t>::max() >> shift)) return too_large();
  uint64_t bytes = *number << shift;
  if (!fraction.empty()) {
    // Exact: fraction / 10^n of 2^shift bytes, in 128 bits, rounded half up. Digits past the
    // 18th change the result by less than a millionth of a byte, so they are dropped.
    const std::string_view kept = fraction.substr(0, 18);
    unsigned __int128 num = 0, den = 1;
    for (char c : kept) {
      num = num * 10 + static_cast<unsigned>(c - '0');
      den *= 10;
    }
    const unsigned __int128 scaled = num << shift;
    const uint64_t extra = static_cast<uint64_t>((scaled + den / 2) / den);
    if (extra > std::numeric_limits<uint64_t>::max() - bytes) return too_large();
    bytes += extra;
  }
  return bytes;
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
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  // Move up while the number would print as 1024.0 or more, so 1048575 is "1.0 MiB", not
  // "1024.0 KiB". TiB at most, the largest unit parse_bytes reads.
  size_t unit = 0;
  double value = bytes / 1024.0;
  while (unit + 1 < std::size(kUnits) && value >= 1023.95) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

}  // namespace kvrdma
