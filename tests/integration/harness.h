// Runs kv-server and kv-client as separate processes for integration tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "kvrdma/options.h"

namespace kvrdma::testing {

// The libfabric provider the suite runs over, from KVRDMA_TEST_PROVIDER (tcp, shm); empty for the
// mock. ctest runs the integration suite once per transport this way.
std::string test_provider();
// Flags selecting that transport, for kv-server and kv-client ({} for the mock).
std::vector<std::string> transport_flags();
// The same choice for the C++ API.
void apply_test_transport(TransportOptions& options);

// A kv-server process on a free loopback port; stopped (SIGTERM, then SIGKILL) when destroyed.
class ServerProcess {
 public:
  // Starts kv-server with `args` plus --listen-addr 127.0.0.1:0 and waits (bounded) for its ready
  // line. Fails the current test (Catch2 REQUIRE) when it does not come up.
  explicit ServerProcess(std::vector<std::string> args = {});
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  // Sends SIGTERM and returns the exit status (-1 if it had to be killed).
  int stop();

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string address_;
};

struct RunResult {
  int exit_code = -1;  // -1 when killed or timed out
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};
};

// Runs `binary args...` with `input` on stdin; kills it after `limit`.
RunResult run(const std::string& binary, const std::vector<std::string>& args,
              const std::string& input = {},
              std::chrono::seconds limit = std::chrono::seconds(60));

// kv-client with --server-addr `server` first.
RunResult run_client(const std::string& server, const std::vector<std::string>& args,
                     const std::string& input = {});

std::string server_binary();
std::string client_binary();
// Deterministic bytes for a key, binary (all 256 values).
std::string pattern(size_t n, unsigned seed);
// A temporary file holding `data`; removed by the caller.
std::string write_temp(const std::string& data);

}  // namespace kvrdma::testing
