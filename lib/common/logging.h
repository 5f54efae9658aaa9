// Logging: one line per message, "[L hh:mm:ss.mmm] text", through one process-wide sink (stderr
// unless a test or embedding program installs its own). The level is not process-wide: each
// Server and Client owns a Logger with its own level and installs it (log::Scope) on the threads
// it runs; a line logged on a thread without a Scope is filtered by the process logger, whose
// level only the programs set (from --log-level). So a Client never changes an embedded Server's
// level. Thread-safe; a line reaches the sink in one call, so lines of threads never interleave.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <functional>
#include <string_view>

#include "kvrdma/options.h"

namespace kvrdma::log {

// A level filter. Thread-safe (the level is atomic); outlives every Scope that names it.
class Logger {
 public:
  explicit Logger(LogLevel level) : level_(level) {}
  void set_level(LogLevel l) { level_.store(l, std::memory_order_relaxed); }
  LogLevel level() const { return level_.load(std::memory_order_relaxed); }
  bool enabled(LogLevel l) const { return static_cast<int>(l) >= static_cast<int>(level()); }
  // Formats the line and hands it to the sink, whatever the level (callers check enabled()).
  void write(LogLevel l, std::string_view message) const;

 private:
  std::atomic<LogLevel> level_;
};

// The logger of threads without a Scope (info until a program sets it).
Logger& process_logger();

// Makes `logger` the calling thread's logger until destroyed (then the previous one is back).
// Not copyable; destroy on the thread that made it.
class Scope {
 public:
  explicit Scope(const Logger* logger);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const Logger* previous_;
};

// The calling thread's logger: the innermost Scope's, else process_logger().
const Logger& current();

// Where every formatted line (ending in '\n') goes; null restores stderr. For tests and
// embedding programs; safe to call while other threads log.
using Sink = std::function<void(LogLevel, std::string_view line)>;
void set_sink(Sink sink);

// The process logger's level: the programs' --log-level. The library never calls these.
void set_level(LogLevel level);
LogLevel level();

inline bool enabled(LogLevel l) { return current().enabled(l); }
inline void write(LogLevel l, std::string_view message) { current().write(l, message); }

template <typename... Args>
void at(LogLevel l, fmt::format_string<Args...> f, Args&&... args) {
  const Logger& logger = current();
  if (logger.enabled(l)) logger.write(l, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace kvrdma::log

#define KVRDMA_LOG_TRACE(...) ::kvrdma::log::at(::kvrdma::LogLevel::kTrace, __VA_ARGS__)
#define KVRDMA_LOG_DEBUG(...) ::kvrdma::log::at(::kvrdma::LogLevel::kDebug, __VA_ARGS__)
#define KVRDMA_LOG_INFO(...) ::kvrdma::log::at(::kvrdma::LogLevel::kInfo, __VA_ARGS__)
#define KVRDMA_LOG_WARN(...) ::kvrdma::log::at(::kvrdma::LogLevel::kWarn, __VA_ARGS__)
#define KVRDMA_LOG_ERROR(...) ::kvrdma::log::at(::kvrdma::LogLevel::kError, __VA_ARGS__)
