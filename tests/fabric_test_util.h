// What the libfabric suites share (fabric_transport_test, fabric_channel_test): opening a provider
// (or skipping a case, saying why, when it cannot be opened here), deadlines, and counting how
// often the progress threads slept and woke. Header-only; callable from any thread except
// open_fabric, whose WARN belongs to the test's main thread.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include "thread_activity.h"
#include "transport/transport.h"

namespace kvrdma::testing {

// A libfabric transport over `provider` with `num_domains` rails, or nullptr (after a WARN that
// says why) when the provider cannot be opened here: the caller skips its case.
inline std::unique_ptr<transport::Transport> open_fabric(const std::string& provider,
                                                         uint32_t num_domains = 1) {
  TransportOptions o;
  o.mock = false;
  o.provider = provider;
  o.num_domains = num_domains;
  auto t = transport::make_transport(o);
  if (!t) {
    WARN("skipping provider " << provider << ": " << t.status().to_string());
    return nullptr;
  }
  return std::move(t).value();
}

// `seconds` from now on the transport's clock.
inline transport::Transport::Clock::time_point deadline(int seconds = 20) {
  return transport::Transport::Clock::now() + std::chrono::seconds(seconds);
}

// Voluntary context switches (the thread slept) so far of this process's threads named `name`,
// and how many such threads there are (thread_activity.h).
inline std::pair<uint64_t, int> context_switches(const std::string& name) {
  ThreadActivity a = thread_activity(name);
  return {a.switches, a.threads};
}

}  // namespace kvrdma::testing
