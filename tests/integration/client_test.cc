// The C++ Client against a kv-server running as a separate process.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <future>
#include <thread>
#include <vector>

#include "integration/harness.h"
#include "integration/test_client.h"
#include "kvrdma/client.h"
#include "kvrdma/server.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using namespace kvrdma::testing;

namespace {

std::unique_ptr<Client> connect(const ServerProcess& server, uint64_t buffer_mb = 64) {
  return connect_client(test_client_options(server.address(), buffer_mb << 20));
}

}  // namespace

TEST_CASE("client: a value above the inline threshold lands in the receive buffer",
          "[client][push]") {
  ServerProcess server({"--memory-mb", "64", "--inline-threshold", "65536"});
  auto c = connect(server);
  CHECK(c->inline_threshold() == 65536);
  std::string big = pattern(1 << 20, 21), small = pattern(1024, 22);
  REQUIRE(c->put("big", big).is_ok());
  REQUIRE(c->put("small", small).is_ok());
  auto before = c->stats();
  REQUIRE(before.is_ok());
  CHECK(before->bytes_put_committed == big.size());
  CHECK(before->bytes_inline_received == small.size());
  {
    auto view = c->get("big");
    REQUIRE(view.is_ok());
    CHECK(view->in_receive_buffer());
    CHECK(view->str() == big);
  }
  auto mid = c->stats();
  REQUIRE(mid.is_ok());
  CHECK(mid->bytes_transport_written - before->bytes_transport_written == big.size());
  CHECK(mid->bytes_inline_sent == before->bytes_inline_sent);
  CHECK(mid->pinned == 0);  // the write completed before the reply, so the pin is gone
  auto view = c->get("small");
  REQUIRE(view.is_ok());
  CHECK_FALSE(view->in_receive_buffer());
  CHECK(view->str() == small);
  auto last = c->stats();
  REQUIRE(last.is_ok());
  CHECK(last->bytes_inline_sent - mid->bytes_inline_sent == small.size());
  CHECK(last->bytes_transport_written == mid->bytes_transport_written);
}

TEST_CASE("client: a server given no inline threshold announces its transport's crossover",
          "[client][push]") {
  ServerProcess server({"--memory-mb", "64"});  // --inline-threshold 0, the default: by transport
  auto c = connect(server);
  const std::string provider = test_provider();
  const uint64_t expected = provider.empty()    ? 32 << 10  // the mock
                            : provider == "shm" ? 64 << 10
                            : provider == "tcp" ? 256 << 10
                                                : 32 << 10;
  CHECK(c->inline_threshold() == expected);
  // A single PUT turns later than a GET (a two-phase PUT adds two round trips of its own).
  const uint64_t put_expected = provider.empty()    ? 64 << 10
                                : provider == "shm" ? 128 << 10
                                : provider == "tcp" ? 256 << 10
                                                    : 64 << 10;
  // At the threshold a value rides inline over gRPC; one byte more goes by transport write, both
  // exact. A request channel's answer carries inline bytes only up to its slot (8 KiB), so there
  // the value at the threshold comes by transport write too.
  const bool via_channel = !test_channel_off();
  const std::string at = pattern(expected, 31), above = pattern(expected + 1, 32);
  REQUIRE(c->put("at", at).is_ok());
  REQUIRE(c->put("above", above).is_ok());
  auto before = c->stats();
  REQUIRE(before.is_ok());
  const bool above_inline = above.size() <= put_expected;
  CHECK(before->bytes_inline_received == at.size() + (above_inline ? above.size() : 0));
  CHECK(before->bytes_put_committed == (above_inline ? 0 : above.size()));
  {
    auto v = c->get("above");
    REQUIRE(v.is_ok());
    CHECK(v->in_receive_buffer());
    CHECK(v->str() == above);
    auto w = c->get("at");
    REQUIRE(w.is_ok());
    CHECK(w->in_receive_buffer() == via_channel);
    CHECK(w->str() == at);
  }
  auto after = c->stats();
  REQUIRE(after.is_ok());
  CHECK(after->bytes_transport_written - before->bytes_transport_written ==
        above.size() + (via_channel ? at.size() : 0));
  CHECK(after->bytes_inline_sent - before->bytes_inline_sent == (via_channel ? 0 : at.size()));

  // Up to the PUT threshold the value rides in the Put RPC, one byte more goes reserve -> write
  // -> commit.
  const std::string put_at = pattern(put_expected, 33), put_above = pattern(put_expected + 1, 34);
  REQUIRE(c->put("put-at", put_at).is_ok());
  auto mid = c->stats();
  REQUIRE(mid.is_ok());
  CHECK(mid->bytes_inline_received - after->bytes_inline_received == put_at.size());
  CHECK(mid->bytes_put_committed == after->bytes_put_committed);
  REQUIRE(c->put("put-above", put_above).is_ok());
  auto last = c->stats();
  REQUIRE(last.is_ok());
  CHECK(last->bytes_inline_received == mid->bytes_inline_received);
  CHECK(last->bytes_put_committed - mid->bytes_put_committed == put_above.size());
  CHECK(c->get_copy("put-at").value() == put_at);
  CHECK(c->get_copy("put-above").value() == put_above);
}

TEST_CASE("client: an inline threshold the operator sets holds for PUTs too", "[client][push]") {
  ServerProcess server({"--memory-mb", "64", "--inline-threshold", "4096"});
  auto c = connect(server);
  CHECK(c->inline_threshold() == 4096);
  const std::string at = pattern(4096, 35), above = pattern(4097, 36);
  auto before = c->stats();
  REQUIRE(before.is_ok());
  REQUIRE(c->put("at", at).is_ok());
  REQUIRE(c->put("above", above).is_ok());
  auto after = c->stats();
  REQUIRE(after.is_ok());
  CHECK(after->bytes_inline_received - before->bytes_inline_received == at.size());
  CHECK(after->bytes_put_committed - before->bytes_put_committed == above.size());
  CHECK(c->get_copy("above").value() == above);
}

TEST_CASE("client: del deletes, and erase, its deprecated old name, still does", "[client]") {
  ServerProcess server({"--memory-mb", "16"});
  auto c = connect(server);
  REQUIRE(c->put("a", "1").is_ok());
  REQUIRE(c->put("b", "2").is_ok());
  CHECK(c->del("a").is_ok());
  CHECK(c->del("a").code() == Code::kNotFound);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  CHECK(c->erase("b").is_ok());
  CHECK(c->erase("b").code() == Code::kNotFound);
#pragma GCC diagnostic pop
  CHECK(c->get("a").status().code() == Code::kNotFound);
  CHECK(c->get("b").status().code() == Code::kNotFound);
}

TEST_CASE("client: a 64 MiB value goes two-phase and comes back byte-exact", "[client][large]") {
  ServerProcess server({"--memory-mb", "160"});
  auto c = connect(server, 128);
  std::string v = pattern(64 << 20, 11);
  REQUIRE(c->put("huge", v).is_ok());
  auto view = c->get("huge");
  REQUIRE(view.is_ok());
  CHECK(view->in_receive_buffer());
  REQUIRE(view->size() == v.size());
  CHECK(view->str() == v);
  auto s = c->stats();
  REQUIRE(s.is_ok());
  CHECK(s->bytes_transport_written >= v.size());
  CHECK(s->bytes_put_committed == v.size());
}

TEST_CASE("client: a value larger than the receive buffer is FAILED_PRECONDITION naming the size",
          "[client]") {
  ServerProcess server({"--memory-mb", "64"});
  auto big = connect(server, 32);
  std::string v = pattern(20 << 20, 2);
  REQUIRE(big->put("v", v).is_ok());  // staged through the 32 MiB buffer in chunks
  auto small = connect(server, 8);
  auto r = small->get("v");
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == Code::kFailedPrecondition);
  CHECK(r.status().message().find(std::to_string(v.size())) != std::string::npos);
  // A value larger than the small client's buffer can still be PUT by it (chunked).
  REQUIRE(small->put("w", v).is_ok());
  CHECK(big->get_copy("w").value() == v);
}

TEST_CASE("client: a get waits for buffer space held by a view", "[client]") {
  ServerProcess server({"--memory-mb", "64"});
  auto c = connect(server, 4);
  std::string a = pattern(3 << 20, 4), b = pattern(3 << 20, 5);
  REQUIRE(c->put("a", a).is_ok());
  REQUIRE(c->put("b", b).is_ok());
  auto held = c->get("a");
  REQUIRE(held.is_ok());
  auto pending = std::async(std::launch::async, [&] { return c->get_copy("b"); });
  CHECK(pending.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);
  CHECK(held->str() == a);
  held->release();
  auto got = pending.get();
  REQUIRE(got.is_ok());
  CHECK(*got == b);
}

TEST_CASE("client: threads share one client, byte-exact", "[client][threads]") {
  ServerProcess server({"--memory-mb", "128"});
  auto c = connect(server, 32);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
        std::string v = pattern(i % 2 ? 200000 : 900, t * 100 + i);
        if (!c->put(key, v).is_ok()) ++bad;
        auto got = c->get_copy(key);
        if (!got.is_ok() || *got != v) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(bad == 0);
}

namespace {

// Child mode: the test binary re-executed as `client_test --kvrdma-child ADDR N` runs one client
// process's workload and exits before Catch2 starts (gRPC does not survive fork, so children exec).
int child_workload(const std::string& addr, int p) {
  ClientOptions o;
  o.server_addr = addr;
  o.client_id = static_cast<uint64_t>(p);
  o.buffer_bytes = 4 << 20;
  o.timeout_ms = 30000;
  apply_test_transport(o.transport);
  auto c = Client::connect(o);
  if (!c) return 10;
  for (int i = 0; i < 6; ++i) {
    std::string key = "p" + std::to_string(p) + "-" + std::to_string(i);
    std::string v = pattern(i % 2 ? 256 << 10 : 1024, p * 31 + i);
    if (!(*c)->put(key, v).is_ok()) return 11;
    auto got = (*c)->get_copy(key);
    if (!got || *got != v) return 12;
  }
  return 0;
}

const bool kChildMode = [] {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> argv;
  for (std::string a; std::getline(f, a, '\0');) argv.push_back(a);
  if (argv.size() == 4 && argv[1] == "--kvrdma-child") {
    std::exit(child_workload(argv[2], std::stoi(argv[3])));
  }
  return false;
}();

}  // namespace

TEST_CASE("client: 32 client processes at once, byte-exact", "[client][processes]") {
  ServerProcess server({"--memory-mb", "256"});
  std::vector<std::future<RunResult>> children;
  for (int p = 0; p < 32; ++p) {
    children.push_back(std::async(std::launch::async, [&, p] {
      return run("/proc/self/exe", {"--kvrdma-child", server.address(), std::to_string(p)});
    }));
  }
  int ok = 0;
  for (auto& child : children) {
    RunResult r = child.get();
    INFO(r.err);
    CHECK(r.exit_code == 0);
    if (r.exit_code == 0) ++ok;
  }
  CHECK(ok == 32);
  auto c = connect(server);
  auto s = c->stats();
  REQUIRE(s.is_ok());
  CHECK(s->keys == 32 * 6);
  CHECK(c->get_copy("p31-5").value() == pattern(256 << 10, 31 * 31 + 5));
}

TEST_CASE("client: TTL in milliseconds expires the key", "[client][ttl]") {
  ServerProcess server({"--memory-mb", "32", "--sweep-interval-ms", "20"});
  auto c = connect(server);
  auto before_put = std::chrono::steady_clock::now();
  REQUIRE(c->put("k", pattern(100000, 1), 500).is_ok());
  auto stored = std::chrono::steady_clock::now();
  auto first = c->get("k");
  // Only a read that surely came within the key's life must find it.
  if (std::chrono::steady_clock::now() - before_put < std::chrono::milliseconds(450)) {
    CHECK(first.is_ok());
  }
  // Read until the key is gone; every read is a round trip to the server.
  auto limit = stored + std::chrono::seconds(20);
  kvrdma::Status last;
  while (std::chrono::steady_clock::now() < limit && (last = c->get("k").status()).is_ok()) {
  }
  CHECK(last.code() == Code::kNotFound);
  CHECK(std::chrono::steady_clock::now() - before_put >= std::chrono::milliseconds(500));
  // The read that found it expired dropped it (or the sweep had): its memory is back.
  CHECK(c->stats()->pool_used_bytes == 0);
  CHECK(c->stats()->keys == 0);
}

TEST_CASE("server: localhost answers on both 127.0.0.1 and [::1]", "[client][mockonly]") {
  kvrdma::ServerOptions so;
  so.listen_addr = "localhost:0";
  so.memory_bytes = 16 << 20;
  auto server = kvrdma::Server::start(so);
  REQUIRE(server.is_ok());
  std::string port = (*server)->address().substr((*server)->address().rfind(':') + 1);
  for (std::string host : {"127.0.0.1", "[::1]", "localhost"}) {
    ClientOptions o;
    o.server_addr = host + ":" + port;
    o.buffer_bytes = 4 << 20;
    auto c = Client::connect(o);
    INFO(host << ": " << c.status().to_string());
    REQUIRE(c.is_ok());
    REQUIRE((*c)->put("k", host).is_ok());
    CHECK((*c)->get_copy("k").value() == host);
  }
  // A second server on the same port must fail, not share it.
  so.listen_addr = "127.0.0.1:" + port;
  auto second = kvrdma::Server::start(so);
  CHECK(second.status().code() == Code::kUnavailable);
}

TEST_CASE("client: stats_after waits for a change and reports it", "[client][stats]") {
  ServerProcess server({"--memory-mb", "16"});
  auto c = connect(server, 8);
  auto before = c->stats();
  REQUIRE(before.is_ok());
  // Nothing changes: the wait runs out and the version is the same.
  auto same = c->stats_after(before->version, std::chrono::milliseconds(100));
  REQUIRE(same.is_ok());
  CHECK(same->version == before->version);
  CHECK(same->keys == 0);
  // A waiter started before a PUT returns with the PUT in its stats.
  auto observer = connect(server, 8);
  auto seen = observer->stats();  // after the observer's own Hello, which moved the version
  REQUIRE(seen.is_ok());
  REQUIRE(seen->keys == 0);
  auto waiter = std::async(std::launch::async, [&] {
    return observer->stats_after(seen->version, std::chrono::milliseconds(10000));
  });
  REQUIRE(c->put("k", "v").is_ok());
  auto after = waiter.get();
  REQUIRE(after.is_ok());
  CHECK(after->version > seen->version);
  CHECK(after->keys == 1);
  // A version already passed answers at once.
  auto old = c->stats_after(0, std::chrono::milliseconds(10000));
  REQUIRE(old.is_ok());
  CHECK(old->version >= after->version);
}
