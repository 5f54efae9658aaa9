#include "integration/harness.h"

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

namespace kvrdma::testing {
namespace {

using Steady = std::chrono::steady_clock;

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

pid_t spawn(const std::string& binary, const std::vector<std::string>& args, int in_fd, int out_fd,
            int err_fd) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  dup2(in_fd, 0);
  dup2(out_fd, 1);
  dup2(err_fd, 2);
  for (int fd = 3; fd < 1024; ++fd) close(fd);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(binary.c_str(), argv.data());
  _exit(127);
}

// Waits for `pid` until `deadline`; SIGKILL after it. Returns the exit code or -1.
int reap(pid_t pid, Steady::time_point deadline) {
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (Steady::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    // A child exit is not a pollable event here; a short poll interval bounds the wait.
    poll(nullptr, 0, 5);
  }
}

}  // namespace

std::string test_provider() { return env_or("KVRDMA_TEST_PROVIDER", ""); }

std::vector<std::string> transport_flags() {
  std::string p = test_provider();
  if (p.empty()) return {};
  return {"--mock", "false", "--provider", p};
}

void apply_test_transport(TransportOptions& options) {
  std::string p = test_provider();
  if (p.empty()) return;
  options.mock = false;
  options.provider = p;
}

std::string server_binary() { return env_or("KVRDMA_SERVER_BIN", KVRDMA_SERVER_BIN_PATH); }
std::string client_binary() { return env_or("KVRDMA_CLIENT_BIN", KVRDMA_CLIENT_BIN_PATH); }

ServerProcess::ServerProcess(std::vector<std::string> args) {
  int out[2];
  REQUIRE(pipe(out) == 0);
  int devnull = open("/dev/null", O_RDWR);
  args.insert(args.begin(), {"--listen-addr", "127.0.0.1:0"});
  for (const auto& f : transport_flags()) args.push_back(f);
  pid_ = spawn(server_binary(), args, devnull, out[1], 2);
  close(out[1]);
  close(devnull);
  out_fd_ = out[0];
  std::string seen;
  auto deadline = Steady::now() + std::chrono::seconds(30);
  const std::string marker = "listening on ";
  while (seen.find('\n') == std::string::npos && Steady::now() < deadline) {
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    ssize_t n = read(out_fd_, buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<size_t>(n));
  }
  INFO("kv-server said: " << seen);
  auto at = seen.find(marker);
  REQUIRE(at != std::string::npos);
  auto end = seen.find_first_of(" \n", at + marker.size());
  address_ = seen.substr(at + marker.size(), end - at - marker.size());
}

int ServerProcess::stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int code = reap(pid_, Steady::now() + std::chrono::seconds(15));
  pid_ = -1;
  if (out_fd_ >= 0) close(out_fd_);
  out_fd_ = -1;
  return code;
}

ServerProcess::~ServerProcess() { stop(); }

RunResult run(const std::string& binary, const std::vector<std::string>& args,
              const std::string& input, std::chrono::seconds limit) {
  int in[2], out[2], err[2];
  REQUIRE(pipe(in) == 0);
  REQUIRE(pipe(out) == 0);
  REQUIRE(pipe(err) == 0);
  auto start = Steady::now();
  pid_t pid = spawn(binary, args, in[0], out[1], err[1]);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  signal(SIGPIPE, SIG_IGN);
  size_t written = 0;
  if (input.empty()) {
    close(in[1]);
    in[1] = -1;
  }
  RunResult r;
  auto deadline = start + limit;
  int open_fds = 2;
  while (open_fds > 0 && Steady::now() < deadline) {
    pollfd p[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
    if (poll(p, in[1] >= 0 ? 3 : 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[65536];
      ssize_t n = read(p[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(p[i].fd);
        (i == 0 ? out[0] : err[0]) = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
    if (in[1] >= 0 && (p[2].revents & (POLLOUT | POLLERR))) {
      ssize_t n = write(in[1], input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if (n < 0 || written == input.size()) {
        close(in[1]);
        in[1] = -1;
      }
    }
  }
  for (int fd : {in[1], out[0], err[0]}) {
    if (fd >= 0) close(fd);
  }
  r.exit_code = reap(pid, deadline);
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

std::string write_temp(const std::string& data) {
  char path[] = "/tmp/kvrdma-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  close(fd);
  return path;
}

}  // namespace kvrdma::testing
