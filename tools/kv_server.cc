// kv-server: runs one kvrdma cache node until SIGINT or SIGTERM.
//
// Prints exactly one line to stdout once serving, so scripts and tests can wait for it and read
// the bound address (the real port when --listen-addr asks for port 0):
//   kv-server ready: listening on 127.0.0.1:43211 (node 0, pool 1024.0 MiB, transport ...)
// Exit codes: 0 clean stop, 2 usage error, 3 startup failure.
#include <fmt/format.h>
#include <signal.h>

#include <cstdio>

#include "cli_common.h"
#include "kvrdma/server.h"
#include "kvrdma/version.h"

namespace {

using namespace kvrdma::tools;

// Blocks SIGINT/SIGTERM in this thread before any other starts, so every thread the library
// creates inherits the mask and the signal is only ever taken by sigwait() in main.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

int run(int argc, char** argv) {
  CLI::App app{"kv-server: a kvrdma cache node (values move by RDMA Write)", "kv-server"};
  app.set_version_flag("--version", fmt::format("kv-server {}", kvrdma::version()));
  kvrdma::ServerOptions options;
  SettingFlags flags;
  add_setting_flags(app, kvrdma::kServerSetting, flags, kvrdma::log_level_name(options.log_level));

  auto args = normalize_bool_flags(argc, argv, kvrdma::kServerSetting, false);
  if (auto code = parse_command_line(app, std::move(args), "kv-server")) return *code;
  if (auto s = apply_setting_flags(flags, options); !s.is_ok()) {
    fmt::print(stderr, "kv-server: {}\n", s.message());
    return kExitUsage;
  }

  const sigset_t stop_signals = block_stop_signals();
  auto server = kvrdma::Server::start(options);
  if (!server) {
    report_error("kv-server: cannot start", server.status());
    return kExitError;
  }
  fmt::print("kv-server ready: listening on {} (node {}, pool {:.1f} MiB, transport {})\n",
             (*server)->address(), options.node_id, options.memory_bytes / double(1 << 20),
             (*server)->transport_description());
  std::fflush(stdout);

  int sig = SIGTERM;
  if (sigwait(&stop_signals, &sig) != 0) sig = SIGTERM;  // only EINVAL, impossible here
  fmt::print(stderr, "kv-server: {} received, shutting down\n",
             sig == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->shutdown();
  server.value().reset();
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  kvrdma::tools::tune_process();
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "kv-server: unexpected error: {}\n", e.what());
    return kExitError;
  }
}
