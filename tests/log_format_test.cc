// --log-format json: every line is one JSON object with time, level and message, plus node,
// client and session where they apply; the text format is what it always was. Lines are parsed
// by Debian's Python (json.loads), the way a log collector would read them.
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "common/logging.h"
#include "integration/harness.h"
#include "kvrdma/client.h"
#include "kvrdma/server.h"

using namespace kvrdma;
using namespace kvrdma::testing;

namespace {

// Parses each input line with json.loads and prints, per line, its keys in order and then each
// value (as ascii(), so every character is visible), one per output line; "time" must be UTC with
// milliseconds and prints as TIME.
constexpr const char* kParse = R"(import json, re, sys
for line in sys.stdin.buffer.read().decode('utf-8').splitlines():
    obj = json.loads(line)
    print(' '.join(obj.keys()))
    for k, v in obj.items():
        if k == 'time':
            assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', v), v
            v = 'TIME'
        print(ascii(v))
)";

RunResult parse_json_lines(const std::string& lines) {
  return run("/usr/bin/python3", {"-c", kParse}, lines, std::chrono::seconds(30));
}

std::chrono::system_clock::time_point at_ms(int64_t ms) {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

// Collects what the library logs while alive; restores stderr when destroyed.
class Captured {
 public:
  Captured() {
    log::set_sink([this](LogLevel, std::string_view line) {
      std::lock_guard lock(mu_);
      lines_.emplace_back(line);
      cv_.notify_all();
    });
  }
  ~Captured() { log::set_sink(nullptr); }
  // Waits up to 10 s for a line containing `part`; returns it, or "" on timeout.
  std::string wait_for(const std::string& part) {
    std::unique_lock lock(mu_);
    std::string found;
    cv_.wait_for(lock, std::chrono::seconds(10), [&] {
      for (const auto& l : lines_) {
        if (l.find(part) != std::string::npos) found = l;
      }
      return !found.empty();
    });
    return found;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;  // guarded by mu_
};

}  // namespace

TEST_CASE("log format: a JSON line holds time, level, labels, session and the message exactly",
          "[logging][ops]") {
  // 2026-12-07T02:10:00.123Z
  const auto when = at_ms(1796609400123);
  const std::string message =
      "quote \" backslash \\ newline \n tab \t bell \x07 caf\xc3\xa9 "
      "bad \xff\xfe end";
  const std::string line =
      log::format_line(LogLevel::kWarn, LogFormat::kJson, log::Labels{.node = 7, .client = {}},
                       0x1f, message, when);
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);  // one line per event, whatever the message holds
  RunResult r = parse_json_lines(line);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out ==
        "time level node session message\n"
        "'TIME'\n"
        "'warn'\n"
        "7\n"
        "'1f'\n"
        "'quote \" backslash \\\\ newline \\n tab \\t bell \\x07 caf\\xe9 bad "
        "\\ufffd\\ufffd end'\n");
  CHECK(line.rfind(R"({"time":"2026-12-07T02:10:00.123Z","level":"warn",)", 0) == 0);
}

TEST_CASE("log format: labels appear only where they apply; the text format is unchanged",
          "[logging][ops]") {
  const auto when = at_ms(1796609400005);
  const std::string client = log::format_line(LogLevel::kError, LogFormat::kJson,
                                              log::Labels{.node = {}, .client = 42}, {}, "x", when);
  CHECK(client == R"({"time":"2026-12-07T02:10:00.005Z","level":"error","client":42,"message":"x"})"
                  "\n");
  const std::string bare = log::format_line(LogLevel::kInfo, LogFormat::kJson, {}, {}, "", when);
  CHECK(bare == R"({"time":"2026-12-07T02:10:00.005Z","level":"info","message":""})"
                "\n");
  const std::string text = log::format_line(LogLevel::kInfo, LogFormat::kText,
                                            log::Labels{.node = 3, .client = {}}, 9, "hi", when);
  REQUIRE(text.size() == std::string("[I hh:mm:ss.005] hi\n").size());
  CHECK(text.substr(0, 3) == "[I ");
  CHECK(text.substr(11) == ".005] hi\n");
}

TEST_CASE("log format: a Logger writes its format and labels, a SessionScope adds the session",
          "[logging][ops]") {
  Captured captured;
  log::Logger logger(LogLevel::kInfo, LogFormat::kJson, log::Labels{.node = 5, .client = {}});
  {
    log::Scope scope(&logger);
    log::SessionScope session(0xabc);
    KVRDMA_LOG_INFO("inside {}", 1);
  }
  {
    log::Scope scope(&logger);
    KVRDMA_LOG_INFO("outside {}", 2);
  }
  const std::string inside = captured.wait_for("inside 1");
  const std::string outside = captured.wait_for("outside 2");
  RunResult r = parse_json_lines(inside + outside);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out ==
        "time level node session message\n'TIME'\n'info'\n5\n'abc'\n'inside 1'\n"
        "time level node message\n'TIME'\n'info'\n5\n'outside 2'\n");
}

TEST_CASE("log format: an embedded Server and Client log JSON lines with their node and client",
          "[logging][ops]") {
  Captured captured;
  ServerOptions so;
  so.listen_addr = "127.0.0.1:0";
  so.memory_bytes = 16 << 20;
  so.node_id = 9;
  so.log_level = LogLevel::kDebug;
  so.log_format = LogFormat::kJson;
  auto server = Server::start(so);
  REQUIRE(server);
  ClientOptions co;
  co.server_addr = (*server)->address();
  co.buffer_bytes = 4 << 20;
  co.client_id = 77;
  co.log_level = LogLevel::kWarn;
  co.log_format = LogFormat::kJson;
  auto client = Client::connect(co);
  REQUIRE(client);
  const std::string opened = captured.wait_for("opened by client 77");
  REQUIRE_FALSE(opened.empty());
  RunResult r = parse_json_lines(opened);
  INFO(opened << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.rfind("time level node", 0) == 0);
  CHECK(r.out.find("\n'debug'\n9\n") != std::string::npos);
}

TEST_CASE("log format: kv-server --log-format json writes only JSON lines to stderr",
          "[logging][ops]") {
  std::string err;
  {
    ServerProcess server(
        {"--log-format", "json", "--log-level", "debug", "--node-id", "4", "--memory-mb", "16"});
    RunResult put = run_client(server.address(), {"--buffer-mb", "4", "put", "k", "v"});
    REQUIRE(put.exit_code == 0);
    REQUIRE(server.stop() == 0);
    err = server.stderr_text();
  }
  INFO(err);
  REQUIRE(err.find("opened by client") != std::string::npos);
  REQUIRE(err.find("received, shutting down") != std::string::npos);
  RunResult r = parse_json_lines(err);  // fails on the first line that is not JSON
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("'SIGTERM received, shutting down'") != std::string::npos);
  CHECK(r.out.find("time level node message\n'") != std::string::npos);
  CHECK(r.out.find("\n4\n") != std::string::npos);
}

TEST_CASE("log format: a bad --log-format is a usage error naming the accepted values",
          "[logging][ops]") {
  RunResult r = run(server_binary(), {"--log-format", "xml", "--listen-addr", "127.0.0.1:0"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("log-format") != std::string::npos);
  CHECK(r.err.find("text or json") != std::string::npos);
}

TEST_CASE("log format: json_escape keeps valid UTF-8 and replaces every invalid sequence",
          "[logging][ops]") {
  CHECK(log::json_escape("plain") == "plain");
  CHECK(log::json_escape("\xf0\x9f\x98\x80 \xe2\x82\xac") == "\xf0\x9f\x98\x80 \xe2\x82\xac");
  CHECK(log::json_escape("\xc0\x80") == "\\ufffd\\ufffd");                        // overlong NUL
  CHECK(log::json_escape("\xed\xa0\x80") == "\\ufffd\\ufffd\\ufffd");             // a surrogate
  CHECK(log::json_escape("\xf4\x90\x80\x80") == "\\ufffd\\ufffd\\ufffd\\ufffd");  // > U+10FFFF
  CHECK(log::json_escape("cut \xe2\x82") == "cut \\ufffd\\ufffd");  // truncated at the end
  CHECK(log::json_escape(std::string("nul \0 del \x7f", 11)) == "nul \\u0000 del \\u007f");
}
