// Waiting for server state without polling: Client::stats_after returns when the server's state
// version moves (a pin released, a session or reservation expired, a key stored...), so a test
// re-checks its condition once per change, never on a timer.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>

#include "kvrdma/client.h"

namespace kvrdma::testing {

// Returns the first stats for which `done` holds, or the last ones read once `limit` passed.
inline ServerStats wait_stats(Client& c, const std::function<bool(const ServerStats&)>& done,
                              std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  auto s = c.stats();
  REQUIRE(s.is_ok());
  ServerStats last = *s;
  // Bounded in count too: each round either sees a new version or waited out its 1 s slice.
  for (int i = 0; i < 100000 && !done(last) && std::chrono::steady_clock::now() < end; ++i) {
    s = c.stats_after(last.version, std::chrono::milliseconds(1000));
    REQUIRE(s.is_ok());
    last = *s;
  }
  return last;
}

}  // namespace kvrdma::testing
