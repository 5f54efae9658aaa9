// The clock behind every TTL, lease and timeout: monotonic, and injectable so tests control time.
#pragma once

#include <atomic>
#include <chrono>

namespace kvrdma {

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual time_point now() const = 0;
};

// steady_clock, never the wall clock (a reset wall clock must not expire or revive keys).
class SteadyClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
  static const SteadyClock& instance() {
    static const SteadyClock clock;
    return clock;
  }
};

// A clock that moves only when told to; for tests. Thread-safe.
class ManualClock final : public Clock {
 public:
  time_point now() const override { return time_point(std::chrono::nanoseconds(ns_.load())); }
  void advance(std::chrono::nanoseconds d) { ns_ += d.count(); }

 private:
  std::atomic<int64_t> ns_{1'000'000'000};
};

}  // namespace kvrdma
