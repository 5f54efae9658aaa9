// kv-server and kv-client as a user runs them: separate processes on a free loopback port.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "integration/harness.h"

using namespace kvrdma::testing;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The integer after "name" in `stats --json` output.
uint64_t json_field(const std::string& json, const std::string& name) {
  auto at = json.find("\"" + name + "\"");
  REQUIRE(at != std::string::npos);
  at = json.find(':', at);
  return std::stoull(json.substr(at + 1));
}

}  // namespace

TEST_CASE("cli: put, get, delete round trip byte-exact", "[cli]") {
  ServerProcess server({"--memory-mb", "64"});
  auto put = run_client(server.address(), {"put", "greeting", "hello world"});
  REQUIRE(put.exit_code == 0);
  auto get = run_client(server.address(), {"get", "greeting"});
  CHECK(get.exit_code == 0);
  CHECK(get.out == "hello world");

  std::string binary = pattern(5000, 1) + std::string("\0\0\xff", 3);
  std::string file = write_temp(binary);
  REQUIRE(run_client(server.address(), {"put", "bin", "--file", file}).exit_code == 0);
  CHECK(run_client(server.address(), {"get", "bin"}).out == binary);
  REQUIRE(run_client(server.address(), {"put", "stdin", "--file", "-"}, binary).exit_code == 0);
  CHECK(run_client(server.address(), {"get", "stdin"}).out == binary);
  std::filesystem::remove(file);

  CHECK(run_client(server.address(), {"delete", "greeting"}).exit_code == 0);
  auto gone = run_client(server.address(), {"get", "greeting"});
  CHECK(gone.exit_code == 1);
  CHECK_FALSE(gone.err.empty());
  CHECK(run_client(server.address(), {"delete", "greeting"}).exit_code == 1);
  CHECK(server.stop() == 0);
}

TEST_CASE("cli: the server address is accepted with or without http://", "[cli][mockonly]") {
  ServerProcess server({"--memory-mb", "32", "--mock"});
  REQUIRE(run_client(server.address(), {"--mock", "put", "k", "v"}).exit_code == 0);
  CHECK(run_client("http://" + server.address(), {"--mock=true", "get", "k"}).out == "v");
  CHECK(run_client(server.address(), {"--mock", "true", "get", "k"}).out == "v");
}

TEST_CASE("cli: usage errors exit 2, a missing key 1, other errors 3", "[cli]") {
  ServerProcess server({"--memory-mb", "32"});
  CHECK(run_client(server.address(), {"--no-such-flag", "get", "k"}).exit_code == 2);
  CHECK(run_client(server.address(), {"get"}).exit_code == 2);
  CHECK(run_client(server.address(), {"frobnicate"}).exit_code == 2);
  CHECK(run_client(server.address(), {"--timeout-ms", "zero", "get", "k"}).exit_code == 2);
  CHECK(run_client(server.address(), {"get", "absent"}).exit_code == 1);
  auto empty = run_client(server.address(), {"put", "", "v"});
  CHECK(empty.exit_code != 0);
  CHECK(empty.err.find("empty") != std::string::npos);
  auto bad_server = run(server_binary(), {"--memory-mb", "lots"});
  CHECK(bad_server.exit_code == 2);
  CHECK(bad_server.err.find("memory-mb") != std::string::npos);
}

TEST_CASE("cli: an unreachable server fails within the timeout", "[cli]") {
  // Nothing listens on port 1 of loopback.
  auto r = run_client("127.0.0.1:1", {"--timeout-ms", "1000", "get", "k"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("UNAVAILABLE") != std::string::npos);
  CHECK(r.elapsed < std::chrono::seconds(10));
}

TEST_CASE("cli: a value above the inline threshold is pushed by the transport", "[cli][push]") {
  ServerProcess server({"--memory-mb", "64"});
  std::string big = pattern(1 << 20, 7);
  std::string in = write_temp(big);
  std::string out = in + ".out";
  REQUIRE(run_client(server.address(), {"put", "big", "--file", in}).exit_code == 0);
  auto before = run_client(server.address(), {"stats", "--json"});
  REQUIRE(before.exit_code == 0);
  REQUIRE(run_client(server.address(), {"get", "big", "--output", out}).exit_code == 0);
  CHECK(read_file(out) == big);
  auto after = run_client(server.address(), {"stats", "--json"});
  CHECK(json_field(after.out, "bytes_transport_written") -
            json_field(before.out, "bytes_transport_written") == big.size());
  CHECK(json_field(after.out, "bytes_inline_sent") == json_field(before.out, "bytes_inline_sent"));
  CHECK(json_field(after.out, "bytes_put_committed") >= big.size());

  REQUIRE(run_client(server.address(), {"put", "small", std::string(1024, 's')}).exit_code == 0);
  REQUIRE(run_client(server.address(), {"get", "small"}).out == std::string(1024, 's'));
  auto last = run_client(server.address(), {"stats", "--json"});
  CHECK(json_field(last.out, "bytes_inline_sent") - json_field(after.out, "bytes_inline_sent") == 1024);
  CHECK(json_field(last.out, "bytes_transport_written") ==
        json_field(after.out, "bytes_transport_written"));
  std::filesystem::remove(in);
  std::filesystem::remove(out);
}

TEST_CASE("cli: --ttl expires a key", "[cli][ttl]") {
  ServerProcess server({"--memory-mb", "32", "--sweep-interval-ms", "50"});
  using std::chrono::steady_clock;
  auto before_put = steady_clock::now();
  REQUIRE(run_client(server.address(), {"put", "k", "v", "--ttl", "2"}).exit_code == 0);
  auto stored = steady_clock::now();
  auto got = run_client(server.address(), {"get", "k"});
  // Only a read that surely happened within the two seconds of life must find the key (a loaded
  // machine can take that long to start a client).
  if (steady_clock::now() - before_put < std::chrono::milliseconds(1900)) CHECK(got.out == "v");
  // Read until the key is gone (each read is a whole client process, so this paces itself).
  auto limit = stored + std::chrono::seconds(20);
  int code = 0;
  while (steady_clock::now() < limit &&
         (code = run_client(server.address(), {"get", "k"}).exit_code) == 0) {
  }
  CHECK(code == 1);
  // Never before its two seconds, counted from when the put was sent.
  CHECK(steady_clock::now() - before_put >= std::chrono::seconds(2));
}

TEST_CASE("cli: repl reads commands from stdin", "[cli][repl]") {
  ServerProcess server({"--memory-mb", "32"});
  auto r = run_client(server.address(), {"repl"}, "put a 1\nget a\ndelete a\nget a\nquit\n");
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("1") != std::string::npos);
  CHECK(run_client(server.address(), {"get", "a"}).exit_code == 1);
}

TEST_CASE("cli: bench --json reports its figures", "[cli][bench]") {
  ServerProcess server({"--memory-mb", "64"});
  auto r = run_client(server.address(), {"bench", "--ops", "500", "--value-size", "4096",
                                         "--concurrency", "4", "--op", "mixed", "--json"});
  REQUIRE(r.exit_code == 0);
  for (const char* f : {"ops_per_sec", "bytes_per_sec", "p50_us", "p99_us", "max_us"}) {
    CHECK(r.out.find(std::string("\"") + f + "\"") != std::string::npos);
  }
  CHECK(json_field(r.out, "ops") == 500);
  CHECK(json_field(r.out, "errors") == 0);
}

TEST_CASE("cli: client and server on different transports fail at Hello", "[cli][mockonly]") {
  ServerProcess server({"--memory-mb", "32"});  // mock
  auto r = run_client(server.address(), {"--mock", "false", "--provider", "tcp", "get", "k"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("transport") != std::string::npos);
  CHECK(r.elapsed < std::chrono::seconds(10));
}

TEST_CASE("cli: SIGTERM stops the server cleanly and leaves nothing in /dev/shm", "[cli]") {
  ServerProcess server({"--memory-mb", "32"});
  REQUIRE(run_client(server.address(), {"put", "k", pattern(200000, 3)}).exit_code != 2);
  pid_t pid = server.pid();
  CHECK(server.stop() == 0);
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
    CHECK(e.path().filename().string().rfind("kvrdma-" + std::to_string(pid) + "-", 0) != 0);
  }
}

TEST_CASE("cli: eviction lru keeps serving, eviction none refuses", "[cli][eviction]") {
  std::string mib = pattern(1 << 20, 9);
  std::string file = write_temp(mib);
  {
    ServerProcess server({"--memory-mb", "16"});
    for (int i = 0; i < 24; ++i) {
      REQUIRE(run_client(server.address(), {"put", "k" + std::to_string(i), "--file", file}).exit_code == 0);
    }
    CHECK(run_client(server.address(), {"get", "k0"}).exit_code == 1);
    CHECK(run_client(server.address(), {"get", "k23"}).out == mib);
  }
  {
    ServerProcess server({"--memory-mb", "16", "--eviction", "none"});
    int failed = 0;
    for (int i = 0; i < 24; ++i) {
      auto r = run_client(server.address(), {"put", "k" + std::to_string(i), "--file", file});
      if (r.exit_code != 0) {
        ++failed;
        CHECK(r.exit_code == 3);
        CHECK(r.err.find("RESOURCE_EXHAUSTED") != std::string::npos);
      }
    }
    CHECK(failed > 0);
    CHECK(run_client(server.address(), {"get", "k0"}).out == mib);
  }
  std::filesystem::remove(file);
}
