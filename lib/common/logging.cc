#include "common/logging.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>

namespace kvrdma::log {
namespace {
constexpr char kLetters[] = {'T', 'D', 'I', 'W', 'E'};

thread_local const Logger* t_current = nullptr;

// The sink is swapped rarely and read per line: readers copy the pointer under the lock and call
// it outside, so a slow sink never blocks set_sink and a replaced sink finishes its line.
std::mutex g_sink_mu;
std::shared_ptr<const Sink> g_sink;  // guarded by g_sink_mu; null: stderr

}  // namespace

Logger& process_logger() {
  static Logger logger(LogLevel::kInfo);
  return logger;
}

Scope::Scope(const Logger* logger) : previous_(t_current) { t_current = logger; }
Scope::~Scope() { t_current = previous_; }

const Logger& current() { return t_current != nullptr ? *t_current : process_logger(); }

void set_sink(Sink sink) {
  auto next = sink ? std::make_shared<const Sink>(std::move(sink)) : nullptr;
  std::lock_guard lock(g_sink_mu);
  g_sink = std::move(next);
}

void set_level(LogLevel l) { process_logger().set_level(l); }
LogLevel level() { return process_logger().level(); }

void Logger::write(LogLevel l, std::string_view message) const {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  std::string line = fmt::format("[{} {:02}:{:02}:{:02}.{:03}] {}\n", kLetters[static_cast<int>(l)],
                                 tm.tm_hour, tm.tm_min, tm.tm_sec, ms.count(), message);
  std::shared_ptr<const Sink> sink;
  {
    std::lock_guard lock(g_sink_mu);
    sink = g_sink;
  }
  if (sink) {
    (*sink)(l, line);
  } else {
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
}

}  // namespace kvrdma::log
