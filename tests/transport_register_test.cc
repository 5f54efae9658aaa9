// Transport::register_memory on every transport (the conformance suite's cases): libfabric
// registers caller memory as a write source and, by its descriptor, a write target; the mock
// refuses it with FAILED_PRECONDITION naming allocate.
#include <catch2/catch.hpp>

#include <vector>

#include "transport_cases.h"

using kvrdma::Code;
using kvrdma::MemoryKind;
using namespace kvrdma::transport;
using namespace kvrdma::transport::testing;

TEST_CASE(
    "transport: register_memory is a write source and target on libfabric, the mock "
    "refuses it",
    "[transport]") {
  for (const TransportCase& c : transport_cases()) {
    DYNAMIC_SECTION(c.name) {
      auto pair = make_transport_pair(c.options);
      if (!pair) {
        WARN("skipping the " << c.name << " transport: " << pair.status().message());
        continue;
      }
      Transport& client = *pair->client;
      Transport& server = *pair->server;
      // Odd address and length: caller memory has any alignment.
      std::vector<std::byte> mine(3 * kPage + 101);
      auto reg = client.register_memory(mine.data() + 3, mine.size() - 3, MemoryKind::kHost);
      if (c.options.mock) {
        REQUIRE_FALSE(reg.is_ok());
        CHECK(reg.status().code() == Code::kFailedPrecondition);
        CHECK_THAT(reg.status().message(), Catch::Contains("Client::allocate"));
        continue;
      }
      INFO(reg.status().message());
      REQUIRE(reg.is_ok());
      CHECK((*reg)->data() == mine.data() + 3);
      CHECK((*reg)->size() == mine.size() - 3);
      CHECK(client.register_memory(nullptr, 10, MemoryKind::kHost).status().code() ==
            Code::kInvalidArgument);
      CHECK(client.register_memory(mine.data(), 0, MemoryKind::kHost).status().code() ==
            Code::kInvalidArgument);

      auto to_server = client.connect(server.address());
      REQUIRE(to_server.is_ok());
      auto to_client = server.connect(client.address());
      REQUIRE(to_client.is_ok());
      auto pool = server.allocate(4 * kPage);
      REQUIRE(pool.is_ok());
      auto pool_remote = (*to_server)->attach((*pool)->descriptor());
      REQUIRE(pool_remote.is_ok());
      auto mine_remote = (*to_client)->attach((*reg)->descriptor());
      REQUIRE(mine_remote.is_ok());
      auto expect = client.expect_writes();
      const size_t len = mine.size() - 3 - 17;

      // Source: the caller's memory.
      fill_pattern((*reg)->data() + 17, len, 5);
      REQUIRE(write_and_wait(client, **reg, 17, *pool_remote, 9, len, deadline()).is_ok());
      CHECK(first_pattern_mismatch((*pool)->data() + 9, len, 5) == len);
      // Target: the caller's memory, at an offset, bounds checked against it.
      fill_pattern((*pool)->data(), len, 6);
      std::fill(mine.begin(), mine.end(), std::byte{0});
      REQUIRE(write_and_wait(server, **pool, 0, *mine_remote, 17, len, deadline()).is_ok());
      CHECK(first_pattern_mismatch(mine.data() + 3 + 17, len, 6) == len);
      CHECK(mine[3 + 16] == std::byte{0});
      CHECK(write_and_wait(server, **pool, 0, *mine_remote, 18, len, deadline()).code() ==
            Code::kInvalidArgument);
    }
  }
}
