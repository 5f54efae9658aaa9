// Parsing and printing of sizes, booleans and durations as people type them. The one size parser
// and the one size formatter of the project: the settings table, the programs' flags and the
// benches all use these, so a size that works in one place works in every other.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvrdma/status.h"

namespace kvrdma {

// A size in bytes: "4096", "64K", "64KB", "64KiB", "1.5M", "2 GiB", "1T" (binary multiples, any
// case, one optional space before the unit). A fraction needs a unit and is rounded to the
// nearest byte (half up). INVALID_ARGUMENT naming the text when malformed, fractional bytes, or
// above 2^64-1.
Result<uint64_t> parse_bytes(std::string_view text);
// A plain non-negative integer. INVALID_ARGUMENT otherwise.
Result<uint64_t> parse_uint(std::string_view text);
// true/false, 1/0, yes/no, on/off (any case).
Result<bool> parse_bool(std::string_view text);
// "512 B", "1.5 KiB", "64.0 MiB", "2.0 GiB", "1.0 TiB": the largest unit that keeps the number at
// least 1 (TiB at most), one decimal. parse_bytes reads it back (to within that decimal).
std::string format_bytes(uint64_t bytes);

}  // namespace kvrdma
