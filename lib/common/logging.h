// Logging: one line per message through one process-wide sink (stderr unless a test or embedding
// program installs its own). A line is "[L hh:mm:ss.mmm] text" or, for log collectors
// (LogFormat::kJson), one JSON object: {"time":"2026-12-07T02:10:00.123Z","level":"info",
// "node":3,"session":"1f","message":"..."}, with "node" (a Server's logger), "client" (a Client's)
// and "session" (inside a SessionScope) only where they apply. The level is not process-wide: each
// Server and Client owns a Logger with its own level and installs it (log::Scope) on the threads
// it runs; a line logged on a thread without a Scope is filtered by the process logger, whose
// level only the programs set (from --log-level). So a Client never changes an embedded Server's
// level. Thread-safe; a line reaches the sink in one call, so lines of threads never interleave.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "kvrdma/options.h"

namespace kvrdma::log {

// Whom a logger's lines are about: a Server's logger names its node, a Client's its client id.
// Written in JSON lines only (text lines stay as they were, for people).
struct Labels {
  std::optional<uint32_t> node;
  std::optional<uint64_t> client;
};

// A level filter and a line format. Thread-safe: level and format are atomic; the labels are set
// by the constructor or by set_labels before any other thread logs through the logger. Outlives
// every Scope that names it.
class Logger {
 public:
  explicit Logger(LogLevel level, LogFormat format = LogFormat::kText, Labels labels = {})
      : level_(level), format_(format), labels_(labels) {}
  void set_level(LogLevel l) { level_.store(l, std::memory_order_relaxed); }
  LogLevel level() const { return level_.load(std::memory_order_relaxed); }
  void set_format(LogFormat f) { format_.store(f, std::memory_order_relaxed); }
  LogFormat format() const { return format_.load(std::memory_order_relaxed); }
  // Not synchronised with write(): call before the logger is shared (see the class comment).
  void set_labels(Labels labels) { labels_ = labels; }
  const Labels& labels() const { return labels_; }
  bool enabled(LogLevel l) const { return static_cast<int>(l) >= static_cast<int>(level()); }
  // Formats the line and hands it to the sink, whatever the level (callers check enabled()).
  void write(LogLevel l, std::string_view message) const;

 private:
  std::atomic<LogLevel> level_;
  std::atomic<LogFormat> format_;
  Labels labels_;
};

// Lines logged on the calling thread while alive are about client session `session` (JSON
// lines carry it as "session", in hex as the text lines print it). Nests; destroy on the thread
// that made it.
class SessionScope {
 public:
  explicit SessionScope(uint64_t session);
  ~SessionScope();
  SessionScope(const SessionScope&) = delete;
  SessionScope& operator=(const SessionScope&) = delete;

 private:
  std::optional<uint64_t> previous_;
};

// One formatted line, ending in '\n' (what Logger::write hands the sink). Pure, for tests.
std::string format_line(LogLevel level, LogFormat format, const Labels& labels,
                        std::optional<uint64_t> session, std::string_view message,
                        std::chrono::system_clock::time_point when);

// `text` as the inside of a JSON string: quotes, backslashes and control characters escaped,
// bytes that are not UTF-8 replaced by U+FFFD, so every line parses as JSON.
std::string json_escape(std::string_view text);

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

// The process logger's level and format: the programs' --log-level and --log-format. The
// library never calls these.
void set_level(LogLevel level);
LogLevel level();
void set_format(LogFormat format);

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
