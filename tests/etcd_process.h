// EtcdProcess: a throwaway single-member etcd for tests, on free loopback ports with its own data
// directory. Tests that need etcd skip when etcd_available() is false. Not thread-safe: one owner
// (spawn it from the test's main thread, so the child dies with the test process).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "kvrdma/status.h"

namespace kvrdma::testing {

// True when /usr/bin/etcd (or $KVRDMA_ETCD_BIN) is there to run.
bool etcd_available();

class EtcdProcess {
 public:
  // Starts etcd and waits (at most 20 s) until it answers a Range; retries on a port clash.
  static Result<std::unique_ptr<EtcdProcess>> start();
  // Stops etcd and removes its data directory.
  ~EtcdProcess();
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // "http://127.0.0.1:<client port>".
  const std::string& endpoint() const { return endpoint_; }
  // SIGTERM, then SIGKILL when it has not exited after 5 s. Idempotent.
  void stop();
  // SIGSTOP / SIGCONT: etcd keeps its sockets but answers nothing ("etcd unreachable").
  void pause();
  void resume();

 private:
  EtcdProcess() = default;
  // One attempt on fresh ports; false (with the reason in *why) when etcd did not come up.
  bool launch(std::string* why);

  std::string data_dir_;
  std::string endpoint_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool paused_ = false;
};

}  // namespace kvrdma::testing
