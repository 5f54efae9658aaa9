// kv-server and kv-client as a user runs them: separate processes on a free loopback port.
// The command-line contract: byte-exact values, exit codes (0 ok, 1 not found, 2 usage, 3 other),
// one-line errors on stderr, repl, bench, clean shutdown.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <regex>

#include "integration/harness.h"

using namespace kvrdma::testing;

namespace {

// The number on the "keys" row of the plain `stats` table.
long stats_table_keys(const std::string& table) {
  std::smatch m;
  INFO("stats output: " << table);
  REQUIRE(std::regex_search(table, m, std::regex(R"((^|\n)keys\s+(\d+)\n)")));
  return std::stol(m[2]);
}

}  // namespace

TEST_CASE("cli: put, get, delete round trip byte-exact", "[cli]") {
  ServerProcess server({"--memory-mb", "64"});
  auto put = run_client(server.address(), {"put", "greeting", "hello world"});
  INFO(put.err);
  REQUIRE(put.exit_code == 0);
  auto get = run_client(server.address(), {"get", "greeting"});
  CHECK(get.exit_code == 0);
  CHECK(get.out == "hello world");

  // Binary bytes, '\0' included, through --file and through stdin.
  std::string binary = std::string("\0a\0", 3) + pattern(5000, 1) + std::string("\0\0\xff", 3);
  auto file_temp = write_temp(binary);
  const std::string& file = file_temp->path;
  REQUIRE(run_client(server.address(), {"put", "bin", "--file", file}).exit_code == 0);
  CHECK(run_client(server.address(), {"get", "bin"}).out == binary);
  REQUIRE(run_client(server.address(), {"put", "stdin", "--file", "-"}, binary).exit_code == 0);
  CHECK(run_client(server.address(), {"get", "stdin"}).out == binary);
  std::string out = file + ".out";
  REQUIRE(run_client(server.address(), {"get", "bin", "--output", out}).exit_code == 0);
  CHECK(read_whole_file(out) == binary);

  auto stats = run_client(server.address(), {"stats"});
  REQUIRE(stats.exit_code == 0);
  CHECK(stats_table_keys(stats.out) == 3);

  CHECK(run_client(server.address(), {"delete", "greeting"}).exit_code == 0);
  auto gone = run_client(server.address(), {"get", "greeting"});
  CHECK(gone.exit_code == 1);
  CHECK(gone.out.empty());
  CHECK_FALSE(gone.err.empty());
  CHECK(std::count(gone.err.begin(), gone.err.end(), '\n') == 1);  // one line
  CHECK(run_client(server.address(), {"delete", "greeting"}).exit_code == 1);
  CHECK(stats_table_keys(run_client(server.address(), {"stats"}).out) == 2);
  CHECK(server.stop() == 0);
}

TEST_CASE("cli: --mock spellings and the address with or without http://", "[cli][mockonly]") {
  ServerProcess server({"--memory-mb", "32", "--mock"});
  REQUIRE(run_client(server.address(), {"--mock", "put", "k", "v"}).exit_code == 0);
  CHECK(run_client("http://" + server.address(), {"--mock=true", "get", "k"}).out == "v");
  CHECK(run_client(server.address(), {"--mock", "true", "get", "k"}).out == "v");
  CHECK(run_client(server.address(), {"get", "k", "--mock"}).out == "v");
  ServerProcess spelled({"--memory-mb", "32", "--mock=true"});
  CHECK(run_client(spelled.address(), {"put", "k", "v"}).exit_code == 0);
  ServerProcess spaced({"--memory-mb", "32", "--mock", "true"});
  CHECK(run_client(spaced.address(), {"put", "k", "v"}).exit_code == 0);
}

TEST_CASE("cli: usage errors exit 2, a missing key 1", "[cli][mockonly]") {
  ServerProcess server({"--memory-mb", "32"});
  for (std::vector<std::string> args :
       std::vector<std::vector<std::string>>{{"--no-such-flag", "get", "k"},
                                             {"get"},
                                             {"put", "k"},
                                             {"put", "k", "v", "--file", "/dev/null"},
                                             {"frobnicate"},
                                             {},
                                             {"--timeout-ms", "zero", "get", "k"},
                                             {"put", "k", "v", "--ttl", "soon"},
                                             {"get", "k", "--server-addr"}}) {
    auto r = run_client(server.address(), args);
    INFO("kv-client " << Catch::Detail::stringify(args) << " -> " << r.err);
    CHECK(r.exit_code == 2);
    CHECK_FALSE(r.err.empty());
  }
  auto missing = run_client(server.address(), {"get", "absent"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("absent") != std::string::npos);

  auto bad_server = run(server_binary(), {"--memory-mb", "lots"});
  CHECK(bad_server.exit_code == 2);
  CHECK(bad_server.err.find("memory-mb") != std::string::npos);
  auto bad_flag = run(server_binary(), {"--no-such-flag"});
  CHECK(bad_flag.exit_code == 2);
  // The server still serves after all that.
  CHECK(run_client(server.address(), {"put", "k", "v"}).exit_code == 0);
}

TEST_CASE("cli: an unreachable or malformed server address fails within the timeout",
          "[cli][mockonly]") {
  std::string nobody = "127.0.0.1:" + std::to_string(unused_loopback_port());
  for (const std::string& addr : {nobody, "http://" + nobody}) {
    auto r = run_client(addr, {"--timeout-ms", "1000", "get", "k"});
    INFO(addr << ": " << r.err);
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("UNAVAILABLE") != std::string::npos);
    CHECK(r.elapsed < std::chrono::seconds(10));
  }
  auto bad = run_client("no such host!:port", {"--timeout-ms", "1000", "get", "k"});
  INFO(bad.err);
  CHECK((bad.exit_code == 2 || bad.exit_code == 3));
  CHECK_FALSE(bad.err.empty());
  CHECK(bad.elapsed < std::chrono::seconds(10));
}

TEST_CASE("cli: repl reads commands from stdin", "[cli][repl]") {
  ServerProcess server({"--memory-mb", "32"});
  auto r = run_client(server.address(), {"repl"}, "put a 1\nget a\ndelete a\nget a\nquit\n");
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "OK\n1\nOK\n(nil)\n");
  CHECK(run_client(server.address(), {"get", "a"}).exit_code == 1);
  // Errors go to stderr and the loop goes on; end of input ends the session like quit.
  auto more = run_client(server.address(), {"repl"}, "bogus\nput b two words\nget b\n");
  CHECK(more.exit_code == 0);
  CHECK(more.out == "OK\ntwo words\n");
  CHECK(more.err.find("bogus") != std::string::npos);
}

TEST_CASE("cli: bench --json reports its figures", "[cli][bench]") {
  ServerProcess server({"--memory-mb", "64"});
  for (std::string op : {"mixed", "put", "get"}) {
    auto r = run_client(server.address(), {"bench", "--ops", "300", "--value-size", "4096",
                                           "--concurrency", "4", "--op", op, "--json"});
    INFO(op << ": " << r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.front() == '{');
    CHECK(std::count(r.out.begin(), r.out.end(), '{') == 1);  // one flat object
    for (const char* f : {"ops_per_sec", "bytes_per_sec", "p50_us", "p99_us", "max_us"}) {
      CHECK(r.out.find(std::string("\"") + f + "\"") != std::string::npos);
    }
    CHECK(json_uint(r.out, "ops") == 300);
    CHECK(json_uint(r.out, "errors") == 0);
    CHECK(json_uint(r.out, "p50_us") <= json_uint(r.out, "p99_us"));
    CHECK(json_uint(r.out, "p99_us") <= json_uint(r.out, "max_us"));
  }
}

TEST_CASE("cli: bench fits its keys to the server's pool and reports a hit rate", "[cli][bench]") {
  // 1000 keys of 1 MiB do not fit a 64 MiB pool; the bench prepares what 3/4 of it holds.
  ServerProcess server({"--memory-mb", "64"});
  auto r =
      run_client(server.address(), {"bench", "--ops", "2000", "--value-size", "1M", "--op", "get"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("bench: op get, value 1.0 MiB (1048576 B), concurrency 1, keys 48 (what 3/4 "
                   "of the server's 64.0 MiB pool holds; set --keys to override)\n") == 0);
  CHECK(r.out.find("  ops          2000\n") != std::string::npos);
  CHECK(r.out.find("  hit rate     100.0% (2000 hits, 0 misses)\n") != std::string::npos);
  CHECK(r.out.find("  errors       0\n") != std::string::npos);

  auto json = run_client(server.address(), {"bench", "--ops", "500", "--value-size", "1.5M", "--op",
                                            "get", "--json"});
  INFO(json.out << json.err);
  REQUIRE(json.exit_code == 0);
  CHECK(json_uint(json.out, "value_size") == 1572864);
  CHECK(json_uint(json.out, "keys") == 32);  // 48 MiB / 1.5 MiB
  CHECK(json_uint(json.out, "hits") == 500);
  CHECK(json_uint(json.out, "misses") == 0);
  CHECK(json_uint(json.out, "errors") == 0);
}

TEST_CASE("cli: bench with more --keys than fit counts evicted keys as misses", "[cli][bench]") {
  ServerProcess server({"--memory-mb", "64"});
  auto r = run_client(server.address(), {"bench", "--ops", "1000", "--value-size", "1M", "--op",
                                         "get", "--keys", "200", "--json"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(json_uint(r.out, "keys") == 200);
  CHECK(json_uint(r.out, "errors") == 0);
  const uint64_t hits = json_uint(r.out, "hits"), misses = json_uint(r.out, "misses");
  CHECK(hits + misses == 1000);
  CHECK(misses > 0);  // at most 64 of the 200 keys can be in the pool
  CHECK(hits > 0);    // the last keys prepared are still there
  auto text = run_client(server.address(), {"bench", "--ops", "200", "--value-size", "1M", "--op",
                                            "get", "--keys", "200"});
  INFO(text.out << text.err);
  REQUIRE(text.exit_code == 0);
  CHECK(text.out.find("keys 200 (--keys)\n") != std::string::npos);
  CHECK(std::regex_search(text.out,
                          std::regex(
                              R"(\n  hit rate     \d+\.\d% \(\d+ hits, [1-9]\d* misses\)\n)")));
}

TEST_CASE("cli: sizes parse the same in every flag", "[cli]") {
  // --inline-threshold goes through the settings table, --value-size through the bench: both
  // take a fraction, and both name the text they refuse.
  ServerProcess server({"--memory-mb", "32", "--inline-threshold", "1.5K"});
  auto put = run_client(server.address(), {"put", "k", "v"});
  CHECK(put.exit_code == 0);
  auto bad_server = run(server_binary(), {"--listen-addr", "127.0.0.1:0", "--memory-mb", "32",
                                          "--inline-threshold", "1.5Q"});
  INFO(bad_server.err);
  CHECK(bad_server.exit_code == 2);
  CHECK(bad_server.err.find("'1.5Q'") != std::string::npos);
  CHECK(bad_server.err.find("inline-threshold") != std::string::npos);
  auto bad_bench = run_client(server.address(), {"bench", "--value-size", "1.5Q"});
  INFO(bad_bench.err);
  CHECK(bad_bench.exit_code == 2);
  CHECK(bad_bench.err.find("--value-size: '1.5Q' is not a size") != std::string::npos);
}

TEST_CASE("cli: client and server on different transports fail at Hello", "[cli][mockonly]") {
  ServerProcess server({"--memory-mb", "32"});  // mock
  for (std::vector<std::string> flags :
       std::vector<std::vector<std::string>>{{"--mock", "false", "--provider", "tcp"},
                                             {"--mock=false", "--provider", "tcp"}}) {
    flags.insert(flags.end(), {"--timeout-ms", "3000", "get", "k"});
    auto r = run_client(server.address(), flags);
    INFO(r.err);
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("transport") != std::string::npos);
    CHECK(r.elapsed < std::chrono::seconds(10));
  }
  CHECK(run_client(server.address(), {"put", "k", "v"}).exit_code == 0);
}

TEST_CASE("cli: SIGTERM stops the server cleanly and leaves nothing in /dev/shm", "[cli]") {
  ServerProcess server({"--memory-mb", "32"});
  auto big_temp = write_temp(pattern(1 << 20, 3));
  const std::string& big = big_temp->path;
  REQUIRE(run_client(server.address(), {"put", "k", "--file", big}).exit_code == 0);
  REQUIRE(run_client(server.address(), {"get", "k", "--output", "/dev/null"}).exit_code == 0);
  pid_t pid = server.pid();
  const std::string prefix = "kvrdma-" + std::to_string(pid) + "-";
  CHECK(server.stop() == 0);
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
    INFO(e.path());
    CHECK(e.path().filename().string().rfind(prefix, 0) != 0);
  }
}

TEST_CASE("cli: --config sets what the flags set and a flag on the command line wins",
          "[cli][config][mockonly]") {
  // max-key-bytes is visible from outside: a 20-byte key is refused above the limit.
  auto conf = write_temp("# kv-server settings\n\n  memory-mb = 32\nmax-key-bytes=8  \n");
  const std::string key(20, 'k');
  {
    ServerProcess server({"--config", conf->path});
    auto refused = run_client(server.address(), {"put", key, "v"});
    INFO(refused.err);
    CHECK(refused.exit_code == 3);
    CHECK(refused.err.find("key of 20 bytes exceeds the limit of 8 bytes") != std::string::npos);
  }
  ServerProcess server({"--config", conf->path, "--max-key-bytes", "64"});
  REQUIRE(run_client(server.address(), {"put", key, "value"}).exit_code == 0);
  auto client_conf = write_temp("timeout-ms = 4000\nlog-level = error\n");
  auto got = run_client(server.address(), {"--config", client_conf->path, "get", key});
  CHECK(got.exit_code == 0);
  CHECK(got.out == "value");
}

TEST_CASE("cli: a bad --config line is a usage error naming the file and line",
          "[cli][config][mockonly]") {
  struct Case {
    std::string text;
    std::string error;  // after "<path>:"
  };
  for (const Case& c : std::vector<Case>{
           {"# sizes\nmemory_mb = 64\n",
            "2: unknown setting 'memory_mb'; did you mean 'memory-mb'?"},
           {"\n\nmemory-mb = lots\n",
            "3: setting 'memory-mb': 'lots' is not valid; expected an integer from 1 to 1048576"},
           {"memory-mb 64\n", "1: expected 'name = value', got 'memory-mb 64'"},
           {"node-id = 1\nnode-id = 2\n", "2: 'node-id' is set twice"},
           {"buffer-mb = 8\n", "1: setting 'buffer-mb' does not apply to kv-server"},
           {"frobnicate = 1\n", "1: unknown setting 'frobnicate'; see kv-server --help"}}) {
    auto conf = write_temp(c.text);
    auto r = run(server_binary(), {"--config", conf->path, "--listen-addr", "127.0.0.1:0"});
    INFO(c.text);
    CHECK(r.exit_code == 2);
    CHECK(r.err == "kv-server: " + conf->path + ":" + c.error + "\n");
  }
  auto missing = run(client_binary(), {"--config", "/nonexistent/kv.conf", "get", "k"});
  CHECK(missing.exit_code == 2);
  CHECK(missing.err.find("/nonexistent/kv.conf") != std::string::npos);
}
