#include "common/logging.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace kvrdma::log {
namespace {
std::atomic<LogLevel> g_level{LogLevel::kInfo};
constexpr char kLetters[] = {'T', 'D', 'I', 'W', 'E'};
}  // namespace

void set_level(LogLevel l) { g_level.store(l, std::memory_order_relaxed); }
LogLevel level() { return g_level.load(std::memory_order_relaxed); }

void write(LogLevel l, std::string_view message) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  std::string line = fmt::format("[{} {:02}:{:02}:{:02}.{:03}] {}\n", kLetters[static_cast<int>(l)],
                                 tm.tm_hour, tm.tm_min, tm.tm_sec, ms.count(), message);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace kvrdma::log
