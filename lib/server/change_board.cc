#include "server/change_board.h"

#include <algorithm>
#include <vector>

namespace kvrdma::server {

ChangeBoard::ChangeBoard() : thread_([this] { loop(); }) {}

ChangeBoard::~ChangeBoard() { stop(); }

void ChangeBoard::bump() {
  version_.fetch_add(1, std::memory_order_acq_rel);
  if (waiting_.load(std::memory_order_acquire) == 0) return;
  // Taking the mutex orders this bump against a waiter the loop is about to sleep on.
  { std::lock_guard lock(mu_); }
  cv_.notify_one();
}

void ChangeBoard::wait(uint64_t after, Steady::time_point deadline, std::function<void()> done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_ && version() <= after && deadline > Steady::now()) {
      waiters_.push_back(Waiter{after, deadline, std::move(done)});
      waiting_.store(waiters_.size(), std::memory_order_release);
      cv_.notify_one();
      return;
    }
  }
  done();
}

std::chrono::milliseconds ChangeBoard::wait_within(std::chrono::milliseconds asked,
                                                   std::chrono::nanoseconds left) {
  using std::chrono::milliseconds;
  // Cut whenever the deadline is within reach, also when it is just above `asked`: gRPC rounds
  // a deadline up to the millisecond, so a 10 s wait under a 10 s deadline may see 10.0004 s.
  // `left - left / 10` cannot overflow, unlike `left * 9 / 10`.
  const auto cut = std::chrono::duration_cast<milliseconds>(left - left / 10);
  return std::clamp(cut, milliseconds(0), std::clamp(asked, milliseconds(0), kMaxWait));
}

void ChangeBoard::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void ChangeBoard::loop() {
  std::vector<std::function<void()>> ready;
  std::unique_lock lock(mu_);
  for (;;) {
    const uint64_t v = version();
    const auto now = Steady::now();
    auto next = Steady::time_point::max();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (stopping_ || v > it->after || it->deadline <= now) {
        ready.push_back(std::move(it->done));
        it = waiters_.erase(it);
      } else {
        next = std::min(next, it->deadline);
        ++it;
      }
    }
    waiting_.store(waiters_.size(), std::memory_order_release);
    if (!ready.empty()) {
      lock.unlock();
      for (auto& done : ready) done();  // finishes RPCs: never under the lock
      ready.clear();
      lock.lock();
      continue;  // state may have moved meanwhile
    }
    if (stopping_) return;
    const size_t n = waiters_.size();
    auto moved = [&] { return stopping_ || version() != v || waiters_.size() != n; };
    if (next == Steady::time_point::max()) {
      cv_.wait(lock, moved);
    } else {
      cv_.wait_until(lock, next, moved);
    }
  }
}

}  // namespace kvrdma::server
