// How busy this process's threads of one name were: voluntary context switches (each a sleep
// that ended) and CPU ticks (utime + stime), read from /proc/self/task. Used by the idle-cost
// cases (a sleeping thread must stay asleep) of the channel and libfabric suites. Involuntary
// switches (preempted, or a yield on a busy machine) say nothing about how often a thread sleeps
// and wakes, so they are left out. Header-only; any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace kvrdma::testing {

struct ThreadActivity {
  uint64_t switches = 0;  // voluntary context switches so far
  uint64_t ticks = 0;     // utime + stime, clock ticks (10 ms each here)
  int threads = 0;        // threads of that name now
};

inline ThreadActivity thread_activity(const std::string& name) {
  ThreadActivity a;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::string comm;
    std::getline(std::ifstream(task.path() / "comm"), comm);
    if (comm != name) continue;
    ++a.threads;
    std::ifstream status(task.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
        a.switches += std::stoull(line.substr(line.find(':') + 1));
      }
    }
    std::string stat;
    std::getline(std::ifstream(task.path() / "stat"), stat);
    std::istringstream f(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 15 && f >> field; ++i) {
      if (i == 14 || i == 15) a.ticks += std::stoull(field);
    }
  }
  return a;
}

}  // namespace kvrdma::testing
