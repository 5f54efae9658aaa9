// kv-client against kv-server as a cache: which path a value takes (inline or transport push),
// TTL expiry and eviction, all seen through the CLI and `stats --json`.
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "integration/harness.h"

using namespace kvrdma::testing;

namespace {

std::string stats_json(const ServerProcess& server) {
  auto r = run_client(server.address(), {"stats", "--json"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return r.out;
}

}  // namespace

TEST_CASE("cli: a value above the inline threshold is pushed by the transport", "[cli][push]") {
  ServerProcess server({"--memory-mb", "64", "--inline-threshold", "65536"});
  std::string big = pattern(1 << 20, 7);
  auto in_temp = write_temp(big);
  const std::string& in = in_temp->path;
  std::string out = in + ".out";
  REQUIRE(run_client(server.address(), {"put", "big", "--file", in}).exit_code == 0);
  auto before = stats_json(server);
  CHECK(json_uint(before, "bytes_put_committed") == big.size());  // two-phase, not inline
  CHECK(json_uint(before, "bytes_inline_received") == 0);
  auto get = run_client(server.address(), {"get", "big", "--output", out});
  INFO(get.err);
  REQUIRE(get.exit_code == 0);
  CHECK(get.out.empty());
  CHECK(read_whole_file(out) == big);
  auto after = stats_json(server);
  CHECK(json_uint(after, "bytes_transport_written") -
            json_uint(before, "bytes_transport_written") ==
        big.size());
  CHECK(json_uint(after, "bytes_inline_sent") == json_uint(before, "bytes_inline_sent"));

  // A 1 KiB value rides inside the reply instead.
  REQUIRE(run_client(server.address(), {"put", "small", std::string(1024, 's')}).exit_code == 0);
  REQUIRE(run_client(server.address(), {"get", "small"}).out == std::string(1024, 's'));
  auto last = stats_json(server);
  CHECK(json_uint(last, "bytes_inline_sent") - json_uint(after, "bytes_inline_sent") == 1024);
  CHECK(json_uint(last, "bytes_transport_written") == json_uint(after, "bytes_transport_written"));
  CHECK(json_uint(last, "bytes_inline_received") == 1024);
  CHECK(json_uint(last, "keys") == 2);
}

TEST_CASE("cli: --ttl expires a key", "[cli][ttl]") {
  ServerProcess server({"--memory-mb", "32", "--sweep-interval-ms", "50"});
  using std::chrono::steady_clock;
  REQUIRE(run_client(server.address(), {"put", "forever", "v"}).exit_code == 0);
  auto before_put = steady_clock::now();
  REQUIRE(run_client(server.address(), {"put", "k", "v", "--ttl", "1"}).exit_code == 0);
  auto stored = steady_clock::now();
  auto got = run_client(server.address(), {"get", "k"});
  // Only a read that surely happened within the key's one second must find it (a loaded
  // machine can take long to start a client process).
  if (steady_clock::now() - before_put < std::chrono::milliseconds(900)) CHECK(got.out == "v");
  // Wait for the second to pass (waiting on time itself, not on an event), then the key is gone.
  auto expired_at = stored + std::chrono::milliseconds(1100);
  while (steady_clock::now() < expired_at) {
    auto left = expired_at - steady_clock::now();
    std::this_thread::sleep_for(
        std::min<steady_clock::duration>(left, std::chrono::milliseconds(100)));
  }
  auto gone = run_client(server.address(), {"get", "k"});
  CHECK(gone.exit_code == 1);
  CHECK(run_client(server.address(), {"get", "forever"}).out == "v");
  // Fractions of a second are accepted too.
  CHECK(run_client(server.address(), {"put", "k2", "v", "--ttl", "0.5"}).exit_code == 0);
}

// 4 MiB values keep the process count low; client_test puts 40 x 1 MiB through the C++ API.
TEST_CASE("cli: eviction lru keeps every put and drops the oldest", "[cli][eviction][mockonly]") {
  const std::string value = pattern(4 << 20, 9);
  auto file_temp = write_temp(value);
  const std::string& file = file_temp->path;
  ServerProcess server({"--memory-mb", "16", "--eviction", "lru"});
  for (int i = 0; i < 8; ++i) {
    auto r = run_client(server.address(),
                        {"--buffer-mb", "8", "put", "k" + std::to_string(i), "--file", file});
    INFO("put k" << i << ": " << r.err);
    REQUIRE(r.exit_code == 0);
  }
  auto first = run_client(server.address(), {"--buffer-mb", "8", "get", "k0"});
  CHECK(first.exit_code == 1);
  CHECK(first.out.empty());
  auto last = run_client(server.address(), {"--buffer-mb", "8", "get", "k7"});
  CHECK(last.exit_code == 0);
  CHECK(last.out == value);
  auto stats = stats_json(server);
  CHECK(json_uint(stats, "evictions") >= 4);
  CHECK(json_uint(stats, "keys") <= 4);
}

TEST_CASE("cli: eviction none refuses puts beyond capacity and keeps what it has",
          "[cli][eviction][mockonly]") {
  const std::string value = pattern(4 << 20, 9);
  auto file_temp = write_temp(value);
  const std::string& file = file_temp->path;
  ServerProcess server({"--memory-mb", "16", "--eviction", "none"});
  std::vector<int> stored;
  int failed = 0;
  for (int i = 0; i < 6; ++i) {
    auto r = run_client(server.address(),
                        {"--buffer-mb", "8", "put", "k" + std::to_string(i), "--file", file});
    if (r.exit_code == 0) {
      stored.push_back(i);
      continue;
    }
    ++failed;
    INFO("put k" << i << ": " << r.err);
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("RESOURCE_EXHAUSTED") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
  CHECK(failed >= 2);
  CHECK(stored.size() >= 3);
  CHECK(stored.front() == 0);
  for (int i : stored) {
    auto r = run_client(server.address(), {"--buffer-mb", "8", "get", "k" + std::to_string(i)});
    INFO("get k" << i << ": " << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == value);
  }
  auto stats = stats_json(server);
  CHECK(json_uint(stats, "evictions") == 0);
  CHECK(json_uint(stats, "keys") == stored.size());
  // Deleting makes room again.
  REQUIRE(run_client(server.address(), {"delete", "k0"}).exit_code == 0);
  CHECK(run_client(server.address(), {"--buffer-mb", "8", "put", "again", "--file", file})
            .exit_code == 0);
}
