#include "etcd_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster/meta_store.h"

extern char** environ;

namespace kvrdma::testing {
namespace {

using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kSetpriv = "/usr/bin/setpriv";

std::string etcd_binary() {
  const char* v = std::getenv("KVRDMA_ETCD_BIN");
  return v != nullptr ? v : "/usr/bin/etcd";
}

// A loopback port free right now (another process may still take it: launch retries).
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

// Like the integration harness: posix_spawn (the test runs gRPC threads) under `setpriv
// --pdeathsig KILL` when spawned from the main thread, so etcd dies with a crashed test.
pid_t spawn(const std::vector<std::string>& args, int out_fd) {
  std::vector<char*> argv;
  if (gettid() == getpid() && access(kSetpriv, X_OK) == 0) {
    for (const char* a : {kSetpriv, "--pdeathsig", "KILL", "--"}) {
      argv.push_back(const_cast<char*>(a));
    }
  }
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

int open_pidfd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

std::string tail_of(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > 2000 ? s.substr(s.size() - 2000) : s;
}

}  // namespace

bool etcd_available() { return access(etcd_binary().c_str(), X_OK) == 0; }

Result<std::unique_ptr<EtcdProcess>> EtcdProcess::start() {
  if (!etcd_available()) {
    return Status(Code::kFailedPrecondition,
                  etcd_binary() + " is missing; install etcd-server (scripts/install-deps)");
  }
  std::unique_ptr<EtcdProcess> p(new EtcdProcess());
  char tmpl[] = "/tmp/kvrdma-etcd-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    return Status(Code::kInternal, "mkdtemp for etcd's data directory failed under /tmp");
  }
  p->data_dir_ = tmpl;
  std::string why;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (p->launch(&why)) return p;
  }
  return Status(Code::kUnavailable, "etcd did not start after 3 attempts: " + why);
}

bool EtcdProcess::launch(std::string* why) {
  int client = free_port();
  int peer = free_port();
  if (client < 0 || peer < 0 || client == peer) {
    *why = "no free loopback port";
    return false;
  }
  std::string c = "http://127.0.0.1:" + std::to_string(client);
  std::string pr = "http://127.0.0.1:" + std::to_string(peer);
  std::string dir = data_dir_ + "/member";
  std::filesystem::remove_all(dir);
  std::string log = data_dir_ + "/etcd.log";
  int out = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    *why = "cannot open " + log;
    return false;
  }
  pid_ = spawn({etcd_binary(),
                "--name",
                "t",
                "--data-dir",
                dir,
                "--listen-client-urls",
                c,
                "--advertise-client-urls",
                c,
                "--listen-peer-urls",
                pr,
                "--initial-advertise-peer-urls",
                pr,
                "--initial-cluster",
                "t=" + pr,
                "--initial-cluster-state",
                "new",
                "--unsafe-no-fsync",
                "--log-level",
                "error"},
               out);
  close(out);
  if (pid_ < 0) {
    *why = "spawning " + etcd_binary() + " failed";
    return false;
  }
  pidfd_ = open_pidfd(pid_);
  endpoint_ = c;
  // Poll until it serves, waking early if it exits (a port clash ends it at once).
  const auto deadline = Steady::now() + 20s;
  for (int i = 0; i < 400 && Steady::now() < deadline; ++i) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      *why = "etcd exited at start: " + tail_of(log);
      pid_ = -1;
      if (pidfd_ >= 0) close(pidfd_);
      pidfd_ = -1;
      return false;
    }
    auto store = cluster::connect_etcd({endpoint_}, 500ms);
    if (store.is_ok()) return true;
    pollfd pf{pidfd_, POLLIN, 0};
    poll(&pf, pidfd_ >= 0 ? 1 : 0, 50);
  }
  *why = "etcd did not answer within 20 s: " + tail_of(log);
  stop();
  return false;
}

void EtcdProcess::stop() {
  if (pid_ < 0) return;
  if (paused_) resume();
  kill(pid_, SIGTERM);
  const auto deadline = Steady::now() + 5s;
  int status = 0;
  bool reaped = false;
  for (int i = 0; i < 1000 && Steady::now() < deadline; ++i) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped = true;
      break;
    }
    pollfd pf{pidfd_, POLLIN, 0};
    poll(&pf, pidfd_ >= 0 ? 1 : 0, 20);
  }
  if (!reaped) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  if (pidfd_ >= 0) close(pidfd_);
  pidfd_ = -1;
  pid_ = -1;
}

namespace {

// True once every thread of `pid` is in the stopped state ('T' in /proc/<pid>/task/*/stat).
bool all_threads_stopped(pid_t pid) {
  std::error_code ec;
  const std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& t : std::filesystem::directory_iterator(tasks, ec)) {
    std::ifstream in(t.path() / "stat");
    std::string line;
    std::getline(in, line);
    const size_t close = line.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos || close + 2 >= line.size()) return false;
    if (line[close + 2] != 'T' && line[close + 2] != 't') return false;
  }
  return !ec;
}

}  // namespace

void EtcdProcess::pause() {
  if (pid_ >= 0 && !paused_) {
    kill(pid_, SIGSTOP);
    paused_ = true;
    // kill() returns before every thread has stopped; on a busy host one may still answer a
    // request sent right after. Wait (bounded) until the kernel shows them all stopped.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!all_threads_stopped(pid_) && std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
  }
}

void EtcdProcess::resume() {
  if (pid_ >= 0 && paused_) {
    kill(pid_, SIGCONT);
    paused_ = false;
  }
}

EtcdProcess::~EtcdProcess() {
  stop();
  std::error_code ec;
  if (!data_dir_.empty()) std::filesystem::remove_all(data_dir_, ec);
}

}  // namespace kvrdma::testing
