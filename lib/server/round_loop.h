// RoundLoop: the background thread shared by SlotMover and ReplicaFiller. It runs `round()`
// again at once while a round makes progress, after `retry_after` when one could not finish
// (a peer or etcd unreachable), and otherwise when notified (a new map) or every `idle_wake`.
//
// Thread-safety: notify(), stop() and stopping() may be called from any thread; `round` runs on
// the loop's own thread only. mu_ guards the wake count and stop; it is never held while
// `round` runs. The owner declares its RoundLoop after everything `round` uses (built last) and
// stops it before those go.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

namespace kvrdma::server {

class RoundLoop {
 public:
  enum class Outcome { kIdle, kProgress, kRetry };
  // Starts the thread, which logs at the creator's level (log::current()).
  RoundLoop(std::function<Outcome()> round,
            std::chrono::milliseconds retry_after = std::chrono::milliseconds(200),
            std::chrono::milliseconds idle_wake = std::chrono::seconds(1));
  ~RoundLoop();  // stop()
  RoundLoop(const RoundLoop&) = delete;
  RoundLoop& operator=(const RoundLoop&) = delete;

  // Runs another round soon (after the one running, if any).
  void notify();
  // Ends the loop once the running round returns, and joins it. Idempotent.
  void stop();
  bool stopping() const;

 private:
  void run();

  const std::function<Outcome()> round_;
  const std::chrono::milliseconds retry_after_, idle_wake_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;   // guarded by mu_
  uint64_t wakes_ = 0;  // guarded by mu_; bumped by notify()
  std::thread thread_;
};

}  // namespace kvrdma::server
