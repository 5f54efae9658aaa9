#include "integration/harness.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

extern char** environ;

namespace kvrdma::testing {
namespace {

using Steady = std::chrono::steady_clock;

constexpr auto kReadyLimit = std::chrono::seconds(20);
constexpr auto kStopLimit = std::chrono::seconds(10);

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

int ms_until(Steady::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Steady::now());
  return left.count() < 0 ? 0 : static_cast<int>(std::min<long long>(left.count(), 1000));
}

constexpr const char* kSetpriv = "/usr/bin/setpriv";  // util-linux, on every Debian system

// posix_spawn, not fork: the test process runs gRPC threads, and a forked child of a threaded
// process may only call async-signal-safe functions before exec. Every fd the harness opens is
// O_CLOEXEC, and closefrom(3) drops anything else, so a child never holds another child's pipe
// (which would keep that pipe from reaching EOF). Returns -1 with errno set on failure.
//
// A child dies with the test: spawned from the main thread, it runs under `setpriv --pdeathsig
// KILL`, which sets PR_SET_PDEATHSIG and execs the binary (same pid), so when the test process
// ends in any way, a crash or ctest's SIGKILL at its timeout included, the kernel kills the
// child instead of leaving a kv-server behind. The signal follows the death of the spawning
// *thread*, so only the main thread, which lives as long as the process, spawns this way; a
// child spawned from another thread (or without setpriv) is only stopped by its owner.
pid_t spawn(const std::string& binary, const std::vector<std::string>& args, int in_fd, int out_fd,
            int err_fd) {
  std::vector<char*> argv;
  // A binary that cannot run is spawned directly, so the failure comes back here with its errno.
  if (gettid() == getpid() && access(kSetpriv, X_OK) == 0 && access(binary.c_str(), X_OK) == 0) {
    for (const char* a : {kSetpriv, "--pdeathsig", "KILL", "--"}) {
      argv.push_back(const_cast<char*>(a));
    }
  }
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return pid;
}

// Waits for `pid` (pollable through `pidfd` when >= 0) until `deadline`, then SIGKILLs it.
// Returns the exit code, or -1 when it died of a signal or had to be killed.
int reap(pid_t pid, int pidfd, Steady::time_point deadline) {
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return -1;
    if (Steady::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      poll(&p, 1, ms_until(deadline));
    } else {
      poll(nullptr, 0, 5);  // no pidfd (old kernel): a short, bounded poll interval
    }
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The syscall directly: glibc 2.36's <sys/pidfd.h> lacks extern "C" for C++ callers.
int open_pidfd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

std::string test_provider() { return env_or("KVRDMA_TEST_PROVIDER", ""); }

// KVRDMA_TEST_CHANNEL=off runs a suite with the request channel off (gRPC only).
bool test_channel_off() { return env_or("KVRDMA_TEST_CHANNEL", "") == "off"; }

std::vector<std::string> transport_flags() {
  std::string p = test_provider();
  std::vector<std::string> flags;
  if (!p.empty()) flags = {"--mock", "false", "--provider", p};
  if (test_channel_off()) {
    flags.push_back("--channel");
    flags.push_back("false");
  }
  return flags;
}

void apply_test_transport(TransportOptions& options) {
  if (test_channel_off()) options.channel = false;
  std::string p = test_provider();
  if (p.empty()) return;
  options.mock = false;
  options.provider = p;
}

std::string server_binary() { return env_or("KVRDMA_SERVER_BIN", KVRDMA_SERVER_BIN_PATH); }
std::string client_binary() { return env_or("KVRDMA_CLIENT_BIN", KVRDMA_CLIENT_BIN_PATH); }

ServerProcess::ServerProcess(std::vector<std::string> args)
    : ServerProcess(std::move(args), NoWait{}) {
  wait_ready();
}

ServerProcess::ServerProcess(std::vector<std::string> args, NoWait) {
  char err_path[] = "/tmp/kvrdma-server-stderr-XXXXXX";
  int err_fd = mkostemp(err_path, O_CLOEXEC);
  REQUIRE(err_fd >= 0);
  err_path_ = err_path;
  int out[2];
  REQUIRE(pipe2(out, O_CLOEXEC) == 0);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  // A test may pick the address (a restart on the same port); else any free loopback port.
  if (std::find(args.begin(), args.end(), "--listen-addr") == args.end()) {
    args.insert(args.begin(), {"--listen-addr", "127.0.0.1:0"});
  }
  for (const auto& f : transport_flags()) args.push_back(f);
  pid_ = spawn(server_binary(), args, devnull, out[1], err_fd);
  int spawn_errno = errno;
  close(out[1]);
  close(devnull);
  close(err_fd);
  out_fd_ = out[0];
  INFO("starting " << server_binary());
  if (pid_ <= 0) {
    unlink(err_path_.c_str());
    FAIL("cannot start kv-server " << server_binary() << ": " << std::strerror(spawn_errno));
  }
  pidfd_ = open_pidfd(pid_);
}

void ServerProcess::wait_ready() {
  if (!address_.empty()) return;
  if (out_fd_ < 0) FAIL("kv-server is not running: it failed to start or was stopped");
  // Read stdout until the ready line, the server's exit, or the deadline.
  std::string seen;
  std::string failure;
  auto deadline = Steady::now() + kReadyLimit;
  while (seen.find('\n') == std::string::npos) {
    if (Steady::now() >= deadline) {
      failure = "kv-server printed no ready line within 20 s";
      break;
    }
    pollfd p[2] = {{out_fd_, POLLIN, 0}, {pidfd_, POLLIN, 0}};
    if (poll(p, pidfd_ >= 0 ? 2 : 1, ms_until(deadline)) <= 0) continue;
    if (p[0].revents & (POLLIN | POLLHUP)) {
      char buf[512];
      ssize_t n = read(out_fd_, buf, sizeof buf);
      if (n > 0) {
        seen.append(buf, static_cast<size_t>(n));
        continue;
      }
      failure = "kv-server closed its stdout before the ready line";
      break;
    }
    if (p[1].revents & POLLIN) {
      failure = "kv-server exited before its ready line";
      break;
    }
  }
  const std::string marker = "listening on ";
  auto at = seen.find(marker);
  if (failure.empty() && at == std::string::npos) failure = "the ready line has no address";
  if (!failure.empty()) {
    // Clean up before FAIL: it throws, and from a constructor no destructor may follow.
    int code = stop();
    std::string log = stderr_text();
    unlink(err_path_.c_str());
    err_path_.clear();
    FAIL(failure << " (exit code " << code << "); stdout: '" << seen << "'; stderr:\n" << log);
  }
  auto end = seen.find_first_of(" \n", at + marker.size());
  address_ = seen.substr(at + marker.size(), end - at - marker.size());
}

int ServerProcess::stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    exit_code_ = reap(pid_, pidfd_, Steady::now() + kStopLimit);
    pid_ = -1;
  }
  for (int* fd : {&pidfd_, &out_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
  return exit_code_;
}

std::string ServerProcess::stderr_text() const { return read_whole_file(err_path_); }

ServerProcess::~ServerProcess() {
  stop();
  if (!err_path_.empty()) unlink(err_path_.c_str());
}

// Thread-safe (the 32-process test calls it from many threads), so it uses no Catch2 macros:
// a harness failure comes back as exit code -1 with the reason in `err`.
RunResult run(const std::string& binary, const std::vector<std::string>& args,
              const std::string& input, std::chrono::seconds limit) {
  static const bool ignore_sigpipe = [] { return signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)ignore_sigpipe;
  RunResult r;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) return {-1, "", "harness: pipe failed", {}};
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]), close(in[1]);
    return {-1, "", "harness: pipe failed", {}};
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(in[0]), close(in[1]), close(out[0]), close(out[1]);
    return {-1, "", "harness: pipe failed", {}};
  }
  auto start = Steady::now();
  pid_t pid = spawn(binary, args, in[0], out[1], err[1]);
  int spawn_errno = errno;
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (pid <= 0) {
    close(in[1]), close(out[0]), close(err[0]);
    r.err = "harness: cannot start " + binary + ": " + std::strerror(spawn_errno);
    return r;
  }
  int pidfd = open_pidfd(pid);
  size_t written = 0;
  if (input.empty()) {
    close(in[1]);
    in[1] = -1;
  }
  auto deadline = start + limit;
  // Until the child closes stdout and stderr: every byte read so the child never blocks on a
  // full pipe, and stdin fed as the child takes it.
  while ((out[0] >= 0 || err[0] >= 0) && Steady::now() < deadline) {
    pollfd p[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
    if (poll(p, 3, ms_until(deadline)) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t n = read(p[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(p[i].fd);
        (i == 0 ? out[0] : err[0]) = -1;
      }
    }
    if (in[1] >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = write(in[1], input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if ((n < 0 && errno != EINTR && errno != EAGAIN) || written == input.size()) {
        close(in[1]);
        in[1] = -1;
      }
    }
  }
  for (int fd : {in[1], out[0], err[0]}) {
    if (fd >= 0) close(fd);
  }
  r.exit_code = reap(pid, pidfd, deadline);
  if (pidfd >= 0) close(pidfd);
  r.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Steady::now() - start);
  return r;
}

RunResult run_client(const std::string& server, const std::vector<std::string>& args,
                     const std::string& input) {
  std::vector<std::string> all = {"--server-addr", server};
  for (const auto& f : transport_flags()) all.push_back(f);
  all.insert(all.end(), args.begin(), args.end());
  return run(client_binary(), all, input);
}

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

TempFile::~TempFile() {
  if (path.empty()) return;
  unlink(path.c_str());
  unlink((path + ".out").c_str());
}

std::unique_ptr<TempFile> write_temp(const std::string& data) {
  char path[] = "/tmp/kvrdma-test-XXXXXX";
  int fd = mkostemp(path, O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto file = std::make_unique<TempFile>();
  file->path = path;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n <= 0 && errno != EINTR) break;
    if (n > 0) done += static_cast<size_t>(n);
  }
  close(fd);
  REQUIRE(done == data.size());
  return file;
}

std::string read_whole_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

int unused_loopback_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  close(fd);
  REQUIRE(ok);
  return ntohs(a.sin_port);
}

uint64_t json_uint(const std::string& json, const std::string& name) {
  auto at = json.find("\"" + name + "\"");
  INFO("field '" << name << "' in: " << json);
  REQUIRE(at != std::string::npos);
  at = json.find(':', at);
  REQUIRE(at != std::string::npos);
  at = json.find_first_not_of(" \t", at + 1);
  REQUIRE(at != std::string::npos);
  REQUIRE(json[at] >= '0');
  REQUIRE(json[at] <= '9');
  return std::stoull(json.substr(at));
}

}  // namespace kvrdma::testing
