// A small logging sink: one line per message on stderr, filtered by a process-wide level.
// Thread-safe; a line is written with one call so lines of different threads never interleave.
#pragma once

#include <fmt/format.h>

#include <string_view>

#include "kvrdma/options.h"

namespace kvrdma::log {

void set_level(LogLevel level);
LogLevel level();
inline bool enabled(LogLevel l) { return static_cast<int>(l) >= static_cast<int>(level()); }
void write(LogLevel level, std::string_view message);

template <typename... Args>
void at(LogLevel l, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(l)) write(l, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace kvrdma::log

#define KVRDMA_LOG_TRACE(...) ::kvrdma::log::at(::kvrdma::LogLevel::kTrace, __VA_ARGS__)
#define KVRDMA_LOG_DEBUG(...) ::kvrdma::log::at(::kvrdma::LogLevel::kDebug, __VA_ARGS__)
#define KVRDMA_LOG_INFO(...) ::kvrdma::log::at(::kvrdma::LogLevel::kInfo, __VA_ARGS__)
#define KVRDMA_LOG_WARN(...) ::kvrdma::log::at(::kvrdma::LogLevel::kWarn, __VA_ARGS__)
#define KVRDMA_LOG_ERROR(...) ::kvrdma::log::at(::kvrdma::LogLevel::kError, __VA_ARGS__)
