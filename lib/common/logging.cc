#include "common/logging.h"

#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>

namespace kvrdma::log {
namespace {
constexpr char kLetters[] = {'T', 'D', 'I', 'W', 'E'};

thread_local const Logger* t_current = nullptr;
thread_local std::optional<uint64_t> t_session;

// The sink is swapped rarely and read per line: readers copy the pointer under the lock and call
// it outside, so a slow sink never blocks set_sink and a replaced sink finishes its line.
std::mutex g_sink_mu;
std::shared_ptr<const Sink> g_sink;  // guarded by g_sink_mu; null: stderr

// Length of the UTF-8 sequence starting at s[i], or 0 when it is not one (overlong forms,
// surrogates and code points past U+10FFFF included, as JSON parsers reject them).
size_t utf8_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3f);
  }
  constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

}  // namespace

Logger& process_logger() {
  static Logger logger(LogLevel::kInfo);
  return logger;
}

Scope::Scope(const Logger* logger) : previous_(t_current) { t_current = logger; }
Scope::~Scope() { t_current = previous_; }

SessionScope::SessionScope(uint64_t session) : previous_(t_session) { t_session = session; }
SessionScope::~SessionScope() { t_session = previous_; }

const Logger& current() { return t_current != nullptr ? *t_current : process_logger(); }

void set_sink(Sink sink) {
  auto next = sink ? std::make_shared<const Sink>(std::move(sink)) : nullptr;
  std::lock_guard lock(g_sink_mu);
  g_sink = std::move(next);
}

void set_level(LogLevel l) { process_logger().set_level(l); }
LogLevel level() { return process_logger().level(); }
void set_format(LogFormat f) { process_logger().set_format(f); }

std::string json_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\u{:04x}", c);
    } else if (c >= 0x80) {
      size_t n = utf8_length(text, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
        continue;
      }
      out.append(text.substr(i, n));
      i += n;
      continue;
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  return out;
}

std::string format_line(LogLevel level, LogFormat format, const Labels& labels,
                        std::optional<uint64_t> session, std::string_view message,
                        std::chrono::system_clock::time_point when) {
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count() % 1000;
  std::tm tm{};
  if (format == LogFormat::kText) {
    localtime_r(&t, &tm);
    return fmt::format("[{} {:02}:{:02}:{:02}.{:03}] {}\n", kLetters[static_cast<int>(level)],
                       tm.tm_hour, tm.tm_min, tm.tm_sec, ms, message);
  }
  // UTC with a 'Z': collectors compare lines from hosts in different time zones.
  gmtime_r(&t, &tm);
  std::string line =
      fmt::format(R"({{"time":"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z","level":"{}")",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  ms, log_level_name(level));
  if (labels.node) line += fmt::format(R"(,"node":{})", *labels.node);
  if (labels.client) line += fmt::format(R"(,"client":{})", *labels.client);
  if (session) line += fmt::format(R"(,"session":"{:x}")", *session);
  line += R"(,"message":")";
  line += json_escape(message);
  line += "\"}\n";
  return line;
}

void Logger::write(LogLevel l, std::string_view message) const {
  std::string line =
      format_line(l, format(), labels_, t_session, message, std::chrono::system_clock::now());
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
