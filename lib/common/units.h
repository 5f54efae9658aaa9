// Parsing and printing of sizes, booleans and durations as people type them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvrdma/status.h"

namespace kvrdma {

// "4096", "64K", "64KiB", "1M", "1MiB", "2G" (binary multiples). INVALID_ARGUMENT otherwise.
Result<uint64_t> parse_bytes(std::string_view text);
// A plain non-negative integer. INVALID_ARGUMENT otherwise.
Result<uint64_t> parse_uint(std::string_view text);
// true/false, 1/0, yes/no, on/off (any case).
Result<bool> parse_bool(std::string_view text);
// "64.0 MiB", "512 B".
std::string format_bytes(uint64_t bytes);

}  // namespace kvrdma
