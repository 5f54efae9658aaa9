#include "server/round_loop.h"

#include "common/logging.h"

namespace kvrdma::server {

RoundLoop::RoundLoop(std::function<Outcome()> round, std::chrono::milliseconds retry_after,
                     std::chrono::milliseconds idle_wake)
    : round_(std::move(round)), retry_after_(retry_after), idle_wake_(idle_wake) {
  thread_ = std::thread([this, l = &log::current()] {  // the server's level, as its creator's
    log::Scope s(l);
    run();
  });
}

RoundLoop::~RoundLoop() { stop(); }

void RoundLoop::notify() {
  {
    std::lock_guard lock(mu_);
    ++wakes_;
  }
  cv_.notify_all();
}

void RoundLoop::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

bool RoundLoop::stopping() const {
  std::lock_guard lock(mu_);
  return stop_;
}

void RoundLoop::run() {
  uint64_t seen = 0;
  Outcome last = Outcome::kIdle;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (last != Outcome::kProgress) {
        cv_.wait_for(lock, last == Outcome::kRetry ? retry_after_ : idle_wake_,
                     [&] { return stop_ || wakes_ != seen; });
      }
      if (stop_) return;
      seen = wakes_;
    }
    last = round_();
  }
}

}  // namespace kvrdma::server
