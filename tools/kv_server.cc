// kv-server: runs one kvrdma cache node until SIGINT or SIGTERM.
//
// Prints exactly one line to stdout once serving, so scripts and tests can wait for it and read
// the bound address (the real port when --listen-addr asks for port 0):
//   kv-server ready: listening on 127.0.0.1:43211 (node 0, pool 1024.0 MiB, transport ...)
// In cluster mode the line ends with the cluster's name, then with --metrics-addr the metrics
// URL. In cluster mode SIGINT/SIGTERM first leaves the cluster gracefully (its values move to
// the other nodes, up to kLeaveTimeout; progress on stderr); a second signal stops at once.
// `kv-server doctor [--json]` checks the host with the same settings instead of serving (one line
// per check; tools/doctor.h) and exits 0 unless a check failed.
// --log-format json turns the log on stderr, and the lines this program writes there itself,
// into one JSON object per line.
// Exit codes: 0 clean stop, 2 usage error, 3 startup failure (doctor: a check failed).
#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "cli_common.h"
#include "common/logging.h"
#include "doctor.h"
#include "kvrdma/server.h"
#include "kvrdma/version.h"

namespace {

using namespace kvrdma::tools;

constexpr auto kLeaveTimeout = std::chrono::seconds(60);

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : "SIGTERM"; }

// A line of this program's own on stderr, shown whatever the log level: under --log-format json
// a log line like the library's (a collector reads one format), else "kv-server: text".
template <typename... Args>
void say(kvrdma::LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  std::string text = fmt::format(f, std::forward<Args>(args)...);
  const kvrdma::log::Logger& logger = kvrdma::log::process_logger();
  if (logger.format() == kvrdma::LogFormat::kJson) {
    logger.write(level, text);
  } else {
    fmt::print(stderr, "kv-server: {}\n", text);
  }
}

// Leaves the cluster on a thread while the main thread keeps waiting for a second signal, which
// cuts the leave short (shutdown() ends it).
void leave_cluster(kvrdma::Server& server, const sigset_t& stop_signals, int first) {
  say(kvrdma::LogLevel::kInfo,
      "{} received, leaving the cluster (values move to the other "
      "nodes; up to {} s, send the signal again to stop at once)",
      signal_name(first), kLeaveTimeout.count());
  std::atomic<bool> done{false};
  kvrdma::Status left;
  std::thread leaver([&] {
    left = server.leave(kLeaveTimeout);
    done = true;
  });
  const timespec tick{0, 100'000'000};
  // Bounded: the leave itself ends within kLeaveTimeout plus one etcd call.
  for (int i = 0; i < 10'000 && !done; ++i) {
    if (i % 50 == 49) {  // every 5 s, whatever the log level
      kvrdma::ServerStats st = server.stats();
      say(kvrdma::LogLevel::kInfo, "leaving: {} slots and {} keys still here (map epoch {})",
          st.slots, st.keys, st.map_epoch);
    }
    int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      say(kvrdma::LogLevel::kInfo, "{} received again, stopping now", signal_name(sig));
      server.shutdown();
      break;
    }
  }
  leaver.join();
  if (left.is_ok()) {
    say(kvrdma::LogLevel::kInfo, "left the cluster; shutting down");
  } else {
    say(kvrdma::LogLevel::kWarn, "leaving the cluster did not finish: {}; shutting down",
        left.message());
  }
}

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
  app.fallthrough();  // settings may follow "doctor" too
  add_setting_flags(app, kvrdma::kServerSetting, flags, kvrdma::log_level_name(options.log_level));
  bool doctor_json = false;
  auto* doctor = app.add_subcommand(
      "doctor",
      "check this host for a server with these settings instead of serving: memlock, "
      "memory, /dev/shm, libfabric providers, a loopback transport write, the port, TLS");
  doctor->add_flag("--json", doctor_json, "one JSON object instead of lines");

  // "doctor" is the one word kv-server takes; a bare boolean flag before it must not eat it.
  bool takes_words = false;
  for (int i = 1; i < argc; ++i) takes_words = takes_words || std::string_view(argv[i]) == "doctor";
  auto args = normalize_bool_flags(argc, argv, kvrdma::kServerSetting, takes_words);
  if (auto code = parse_command_line(app, std::move(args), "kv-server")) return *code;
  if (auto s = apply_setting_flags(flags, options); !s.is_ok()) {
    fmt::print(stderr, "kv-server: {}\n", s.message());
    return kExitUsage;
  }
  // The server logs at its own level; this one filters what the library logs on threads it does
  // not run as the server (gRPC's), so the program prints what --log-level asks for.
  kvrdma::log::set_level(options.log_level);
  kvrdma::log::set_format(options.log_format);
  // Lines of threads the server does not run (gRPC's, main's) name the node too. No other
  // thread logs yet.
  kvrdma::log::process_logger().set_labels({.node = options.node_id, .client = {}});
  if (doctor->parsed()) {
    auto checks = doctor_server(options);
    fmt::print("{}",
               doctor_json ? kvrdma::tools::doctor_json("kv-server", checks) : doctor_text(checks));
    return doctor_exit_code(checks);
  }

  const sigset_t stop_signals = block_stop_signals();
  auto server = kvrdma::Server::start(options);
  if (!server) {
    if (options.log_format == kvrdma::LogFormat::kJson) {
      say(kvrdma::LogLevel::kError, "cannot start: {}", server.status().to_string());
      return kExitError;
    }
    report_error("kv-server: cannot start", server.status());
    return kExitError;
  }
  const std::string metrics = (*server)->metrics_address();
  fmt::print("kv-server ready: listening on {} (node {}, pool {:.1f} MiB, transport {}{}{})\n",
             (*server)->address(), options.node_id, options.memory_bytes / double(1 << 20),
             (*server)->transport_description(),
             options.cluster.empty() ? "" : fmt::format(", cluster {}", options.cluster),
             metrics.empty() ? "" : fmt::format(", metrics http://{}/metrics", metrics));
  std::fflush(stdout);

  int sig = SIGTERM;
  if (sigwait(&stop_signals, &sig) != 0) sig = SIGTERM;  // only EINVAL, impossible here
  if (!options.cluster.empty()) {
    leave_cluster(**server, stop_signals, sig);
  } else {
    say(kvrdma::LogLevel::kInfo, "{} received, shutting down", signal_name(sig));
  }
  (*server)->shutdown();
  server.value().reset();
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  return kvrdma::tools::program_main("kv-server", run, argc, argv);
}
