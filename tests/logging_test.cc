// The log level belongs to each Server and Client: a Client at "error" in the same process as a
// Server at "info" must not silence the server's info lines (it once set a process-wide level).
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <regex>
#include <string>
#include <vector>

#include "common/logging.h"
#include "kvrdma/client.h"
#include "kvrdma/server.h"

using namespace kvrdma;

namespace {

// Collects every line the library logs while alive; restores stderr when destroyed.
class CapturedLog {
 public:
  CapturedLog() {
    log::set_sink([this](LogLevel, std::string_view line) {
      std::lock_guard lock(mu_);
      lines_.emplace_back(line);
      cv_.notify_all();
    });
  }
  ~CapturedLog() { log::set_sink(nullptr); }

  // Waits up to `limit` for a line whose text after the "[L hh:mm:ss.mmm] " prefix is `text`.
  bool wait_for(const std::string& text, std::chrono::milliseconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return find_locked(text); });
  }
  // Waits up to `limit` for a line matching `pattern` (the whole line, prefix included).
  bool wait_for_match(const std::regex& pattern, std::chrono::milliseconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] {
      for (const auto& l : lines_) {
        if (std::regex_match(l, pattern)) return true;
      }
      return false;
    });
  }
  bool any_contains(const std::string& part) {
    std::lock_guard lock(mu_);
    for (const auto& l : lines_) {
      if (l.find(part) != std::string::npos) return true;
    }
    return false;
  }

 private:
  bool find_locked(const std::string& text) const {
    static const std::regex kPrefix(R"(^\[[TDIWE] \d\d:\d\d:\d\d\.\d\d\d\] )");
    for (const auto& l : lines_) {
      if (std::regex_replace(l, kPrefix, "") == text + "\n") return true;
    }
    return false;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;  // guarded by mu_
};

}  // namespace

TEST_CASE("logging: a Logger filters by its own level and a Scope applies it to one thread",
          "[logging]") {
  CapturedLog captured;
  log::Logger quiet(LogLevel::kError);
  {
    log::Scope scope(&quiet);
    KVRDMA_LOG_WARN("hidden {}", 1);
    KVRDMA_LOG_ERROR("shown {}", 2);
    CHECK(&log::current() == &quiet);
  }
  CHECK(&log::current() == &log::process_logger());
  KVRDMA_LOG_INFO("process {}", 3);  // the process logger is at info
  CHECK_FALSE(captured.any_contains("hidden 1"));
  CHECK(captured.wait_for("shown 2", std::chrono::milliseconds(0)));
  CHECK(captured.wait_for("process 3", std::chrono::milliseconds(0)));
}

TEST_CASE("logging: a Client at error does not silence an embedded Server at info",
          "[logging][client]") {
  CapturedLog captured;
  const LogLevel process_level = log::level();
  ServerOptions so;
  so.listen_addr = "127.0.0.1:0";
  so.memory_bytes = 16 << 20;
  so.log_level = LogLevel::kInfo;
  // A lease shorter than the client's keepalive period (at least 50 ms): the session expires
  // and the server's sweeper logs it at info.
  so.lease_ms = 20;
  so.sweep_interval_ms = 10;
  auto server = Server::start(so);
  REQUIRE(server);

  ClientOptions co;
  co.server_addr = (*server)->address();
  co.log_level = LogLevel::kError;
  auto client = Client::connect(co);
  REQUIRE(client);
  CHECK(log::level() == process_level);

  CHECK(
      captured.wait_for("1 client sessions expired (no call for 20 ms)", std::chrono::seconds(10)));
  client.value().reset();
  // The client's own warnings (its keepalive found the session gone) stay below its level.
  CHECK_FALSE(captured.any_contains("keepalive at"));
  (*server)->shutdown();
}

TEST_CASE("logging: an embedded Server at debug logs a session a Client at error opens",
          "[logging][client]") {
  CapturedLog captured;
  ServerOptions so;
  so.listen_addr = "127.0.0.1:0";
  so.memory_bytes = 16 << 20;
  so.log_level = LogLevel::kDebug;
  auto server = Server::start(so);
  REQUIRE(server);
  CHECK(captured.wait_for("kv-server listening on " + (*server)->address(),
                          std::chrono::milliseconds(0)));
  ClientOptions co;
  co.server_addr = (*server)->address();
  co.client_id = 77;
  co.buffer_bytes = 1 << 20;
  co.log_level = LogLevel::kError;
  auto client = Client::connect(co);
  REQUIRE(client);
  // Logged on a gRPC thread while the client connects, at the server's level.
  const std::regex opened(R"(\[D \d\d:\d\d:\d\d\.\d\d\d\] session [0-9a-f]+ opened by client 77 )"
                          R"(\(1048576 byte buffer, version [^)]+\)\n)");
  CHECK(captured.wait_for_match(opened, std::chrono::seconds(5)));
  CHECK(log::level() == LogLevel::kInfo);  // nobody touched the process logger
  client.value().reset();
  (*server)->shutdown();
}
