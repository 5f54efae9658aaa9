// ChangeBoard: a version number for the server's observable state, and Stats calls that wait for
// it to move. Tests and tools wait on it ("until the pin is released", "until the session
// expired") instead of polling Stats in a loop.
//
// The version moves when keys, sessions, reservations, pins or the pool change: every handler
// that stores, deletes, begins, commits or aborts, every finished transport write, every sweep
// that removed something. Read counters (gets, hits) do not move it.
//
// Waiters are finished by one thread of the board's own, never by the thread that bumps, so a
// bump on the request path costs an atomic increment (plus a notify while someone waits).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <thread>

namespace kvrdma::server {

class ChangeBoard {
 public:
  using Steady = std::chrono::steady_clock;
  // The longest a waiter may wait; asking more waits this long.
  static constexpr std::chrono::milliseconds kMaxWait{10000};

  ChangeBoard();
  ~ChangeBoard();  // stop()s
  ChangeBoard(const ChangeBoard&) = delete;
  ChangeBoard& operator=(const ChangeBoard&) = delete;

  uint64_t version() const { return version_.load(std::memory_order_acquire); }
  void bump();

  // Runs `done` once, on the board's thread, as soon as version() > `after`, or at `deadline`,
  // or at stop(); at once (on the caller's thread) when version() > `after` already.
  void wait(uint64_t after, Steady::time_point deadline, std::function<void()> done);

  // How long a long poll that asked for `asked` waits when `left` remains before its call's
  // deadline: `asked`, at most kMaxWait, and at most nine tenths of `left` (the last tenth is
  // the answer's, so it reaches the caller before the deadline); 0 once `left` is gone. `left`
  // may be as large as a duration holds (a call without deadline).
  static std::chrono::milliseconds wait_within(std::chrono::milliseconds asked,
                                               std::chrono::nanoseconds left);

  // Finishes every waiter and refuses new ones (they run at once). Idempotent.
  void stop();

 private:
  struct Waiter {
    uint64_t after;
    Steady::time_point deadline;
    std::function<void()> done;
  };
  void loop();

  std::atomic<uint64_t> version_{1};
  std::atomic<size_t> waiting_{0};  // waiters_.size(), readable without the lock
  std::mutex mu_;
  std::condition_variable cv_;
  std::list<Waiter> waiters_;  // guarded by mu_
  bool stopping_ = false;      // guarded by mu_
  std::thread thread_;         // last: starts after the members above exist
};

// Bumps the board when it goes out of scope: declared at the top of a handler that may change
// state, it moves the version after whatever the handler did, on every return path.
class BumpOnReturn {
 public:
  explicit BumpOnReturn(ChangeBoard& board) : board_(board) {}
  ~BumpOnReturn() { board_.bump(); }
  BumpOnReturn(const BumpOnReturn&) = delete;
  BumpOnReturn& operator=(const BumpOnReturn&) = delete;

 private:
  ChangeBoard& board_;
};

}  // namespace kvrdma::server
