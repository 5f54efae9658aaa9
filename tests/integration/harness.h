// Runs kv-server and kv-client as separate processes for integration tests. Every wait here is
// bounded: a hung program is killed and the test fails with what it printed, never hangs ctest.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "kvrdma/options.h"

namespace kvrdma::testing {

// The libfabric provider the suite runs over, from KVRDMA_TEST_PROVIDER (tcp, shm); empty for the
// mock. ctest runs the integration suite once per transport this way.
std::string test_provider();
// True when KVRDMA_TEST_CHANNEL=off runs the suite with the request channel off (gRPC only).
bool test_channel_off();
// Flags selecting that transport, for kv-server and kv-client ({} for the mock).
std::vector<std::string> transport_flags();
// The same choice for the C++ API.
void apply_test_transport(TransportOptions& options);

// A kv-server process on a free loopback port; stopped (SIGTERM, then SIGKILL after 10 s) when
// destroyed. Its stderr goes to a temporary file so a failure can show it without the server ever
// blocking on a full pipe.
class ServerProcess {
 public:
  // Starts kv-server with `args` plus --listen-addr 127.0.0.1:0 and waits up to 20 s for its
  // ready line ("kv-server ready: listening on <host:port> ..."). Fails the current test
  // (Catch2 REQUIRE) with the server's stderr when it exits or stays silent instead.
  explicit ServerProcess(std::vector<std::string> args = {});
  // Starts kv-server as above but returns at once, so several servers can start side by side;
  // wait_ready() must come before address().
  struct NoWait {};
  ServerProcess(std::vector<std::string> args, NoWait);
  // Waits for the ready line as the first constructor does, failing the test the same way.
  // Returns at once when the server was ready already.
  void wait_ready();
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // "127.0.0.1:<port>" as the server reported it.
  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  // Sends SIGTERM and returns the exit code: 0 for a clean stop, -1 if it died of a signal or
  // had to be killed. Later calls return the same code.
  int stop();
  // What the server wrote to stderr so far (its log).
  std::string stderr_text() const;

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  int exit_code_ = -1;
  std::string address_;
  std::string err_path_;
};

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};
};

// Runs `binary args...` with `input` on stdin; kills it after `limit`.
RunResult run(const std::string& binary, const std::vector<std::string>& args,
              const std::string& input = {}, std::chrono::seconds limit = std::chrono::seconds(60));

// kv-client with --server-addr `server` (and the test transport's flags) first.
RunResult run_client(const std::string& server, const std::vector<std::string>& args,
                     const std::string& input = {});

std::string server_binary();
std::string client_binary();
// Deterministic bytes for a seed, binary (every byte value occurs, including '\0').
std::string pattern(size_t n, unsigned seed);
// A temporary file holding some data; removed (with "<path>.out", where tests write output)
// when destroyed, even when a REQUIRE ends the test early.
struct TempFile {
  std::string path;
  TempFile() = default;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile();
};
// A TempFile holding `data`.
std::unique_ptr<TempFile> write_temp(const std::string& data);
std::string read_whole_file(const std::string& path);
// A loopback TCP port nothing listened on a moment ago (bound to port 0, then closed).
int unused_loopback_port();
// The unsigned integer after "name": in a flat JSON object; fails the test when absent.
uint64_t json_uint(const std::string& json, const std::string& name);

}  // namespace kvrdma::testing
