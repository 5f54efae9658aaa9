// Transfers in flight while the other side changes underneath them: a key deleted and rewritten
// while GETs push it, and a client killed while the server is writing into its buffer. Runs over
// the mock and again over libfabric tcp and shm (see tests/integration.cmake).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>
#include <vector>

#include "integration/harness.h"
#include "integration/test_client.h"
#include "integration/wait_stats.h"
#include "kvrdma/client.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using namespace kvrdma::testing;

namespace {

constexpr size_t kValueBytes = 2 << 20;  // far above the inline threshold: always a transport write

ClientOptions options_for(const std::string& addr) { return test_client_options(addr); }

std::unique_ptr<Client> connect(const ServerProcess& server) {
  return connect_client(options_for(server.address()));
}

// Version v of the value: every byte the same, never 0, so a torn read (bytes of two versions,
// or bytes never written) shows as a byte that differs from the first.
std::string version(int v) { return std::string(kValueBytes, static_cast<char>(1 + v % 250)); }

bool whole_version(std::string_view bytes) {
  return bytes.size() == kValueBytes && bytes[0] != 0 &&
         std::all_of(bytes.begin(), bytes.end(), [&](char c) { return c == bytes[0]; });
}

// Child mode: `transfer_test --kvrdma-getter ADDR` runs GET loops of "hot" in 8 threads and
// writes one line to stdout once GETs are flowing; the test kills it mid-transfer.
int getter(const std::string& addr) {
  auto c = Client::connect(options_for(addr));
  if (!c) return 10;
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {  // bounded; the test kills us long before
        auto v = (*c)->get("hot");
        if (v.is_ok() && done.fetch_add(1) == 7) {
          std::fputs("getting\n", stdout);
          std::fflush(stdout);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return 0;
}

const bool kChildMode = [] {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> argv;
  for (std::string a; std::getline(f, a, '\0');) argv.push_back(a);
  if (argv.size() == 3 && argv[1] == "--kvrdma-getter") std::exit(getter(argv[2]));
  return false;
}();

}  // namespace

TEST_CASE("transfer: delete and overwrite during GETs never tear a value", "[transfer]") {
  ServerProcess server({"--memory-mb", "128"});
  auto writer = connect(server);
  auto reader = connect(server);
  REQUIRE(writer->put("k", version(0)).is_ok());

  std::atomic<bool> stop{false};
  std::atomic<int> whole{0}, absent{0}, torn{0}, failed{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; i < 20000 && !stop; ++i) {
        auto v = reader->get("k");
        if (v.is_ok()) {
          (whole_version(v->str()) ? whole : torn)++;
        } else if (v.status().code() == Code::kNotFound) {
          absent++;
        } else {
          failed++;
        }
      }
    });
  }
  // Each round deletes the key and writes a new version while the readers keep pushing it.
  int rounds = 0;
  for (int v = 1; v <= 60; ++v, ++rounds) {
    REQUIRE(writer->del("k").is_ok());
    REQUIRE(writer->put("k", version(v)).is_ok());
  }
  stop = true;
  for (auto& t : readers) t.join();
  INFO("whole " << whole << ", absent " << absent << ", torn " << torn << ", failed " << failed);
  CHECK(torn == 0);
  CHECK(failed == 0);
  CHECK(whole > 0);
  CHECK(rounds == 60);
  // Every push completed before its reply, so no pin is left and the last version is there.
  auto s = writer->stats();
  REQUIRE(s.is_ok());
  CHECK(s->pinned == 0);
  CHECK(reader->get_copy("k").value() == version(60));
}

// Not run over libfabric 1.17's shm provider ([shm-unsafe], see tests/integration.cmake): to post
// a write, shm takes a process-shared spinlock inside the *target's* shared memory, and a client
// killed while holding it (its progress thread takes it constantly) leaves every later write to
// it spinning forever in fi_writemsg (seen with gdb). The transport refuses writes to a shm peer
// whose process has exited, which covers writes that start after the death, not those already
// spinning.
TEST_CASE("transfer: a client killed with GETs in flight leaves the server serving, pins freed",
          "[transfer][shm-unsafe]") {
  ServerProcess server({"--memory-mb", "128", "--lease-ms", "2000", "--sweep-interval-ms", "50"});
  auto c = connect(server);
  std::string hot(8 << 20, 'h');
  REQUIRE(c->put("hot", hot).is_ok());
  auto baseline = c->stats();
  REQUIRE(baseline.is_ok());

  int out[2];
  REQUIRE(pipe(out) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // exec at once: gRPC does not survive fork
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    execl("/proc/self/exe", "transfer_test", "--kvrdma-getter", server.address().c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  char line[16] = {};
  ssize_t n = read(out[0], line, sizeof line - 1);  // blocks until GETs flow, EOF if it died
  close(out[0]);
  REQUIRE(n > 0);
  CHECK(std::string(line, static_cast<size_t>(n)) == "getting\n");
  REQUIRE(kill(child, SIGKILL) == 0);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));

  // The writes into the dead client complete or fail; either way their pins go, and the dead
  // session ends when its lease runs out.
  auto s = wait_stats(
      *c,
      [&](const kvrdma::ServerStats& st) {
        return st.pinned == 0 && st.sessions == baseline->sessions;
      },
      std::chrono::seconds(60));
  CHECK(s.pinned == 0);
  CHECK(s.sessions == baseline->sessions);
  CHECK(s.keys == baseline->keys);
  // The server still serves, byte-exact.
  auto after = c->get_copy("hot");
  INFO(after.status().to_string());
  REQUIRE(after.is_ok());
  CHECK(*after == hot);
  CHECK(server.stop() == 0);
}
