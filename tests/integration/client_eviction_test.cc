// Eviction seen through the C++ Client against a kv-server process with a 16 MiB pool.
#include <catch2/catch.hpp>

#include <vector>

#include "integration/harness.h"
#include "integration/test_client.h"
#include "kvrdma/client.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using namespace kvrdma::testing;

namespace {

std::unique_ptr<Client> connect_small(const ServerProcess& server) {
  return connect_client(test_client_options(server.address(), 4 << 20));
}

std::string key(int i) { return "k" + std::to_string(i); }

}  // namespace

TEST_CASE("eviction: lru takes 40 x 1 MiB into 16 MiB, dropping the oldest", "[client][eviction]") {
  ServerProcess server({"--memory-mb", "16", "--eviction", "lru"});
  auto c = connect_small(server);
  for (int i = 0; i < 40; ++i) {
    auto s = c->put(key(i), pattern(1 << 20, i));
    INFO("put " << key(i) << ": " << s.to_string());
    REQUIRE(s.is_ok());
  }
  for (int i = 0; i < 4; ++i) CHECK(c->get(key(i)).status().code() == Code::kNotFound);
  // The newest values are all still there, byte-exact.
  for (int i = 36; i < 40; ++i) {
    auto v = c->get_copy(key(i));
    INFO(key(i) << ": " << v.status().to_string());
    REQUIRE(v.is_ok());
    CHECK(*v == pattern(1 << 20, i));
  }
  auto s = c->stats();
  REQUIRE(s.is_ok());
  CHECK(s->evictions >= 40 - 16);
  CHECK(s->keys == 40 - s->evictions);
  CHECK(s->pool_used_bytes <= s->pool_bytes);
  CHECK(s->pinned == 0);
}

TEST_CASE("eviction: none answers RESOURCE_EXHAUSTED and keeps what it stored",
          "[client][eviction]") {
  ServerProcess server({"--memory-mb", "16", "--eviction", "none"});
  auto c = connect_small(server);
  std::vector<int> stored;
  int refused = 0;
  for (int i = 0; i < 24; ++i) {
    auto s = c->put(key(i), pattern(1 << 20, i));
    if (s.is_ok()) {
      stored.push_back(i);
      continue;
    }
    ++refused;
    INFO("put " << key(i) << ": " << s.to_string());
    CHECK(s.code() == Code::kResourceExhausted);
    CHECK_FALSE(s.message().empty());
  }
  CHECK(refused >= 8);
  CHECK(stored.size() >= 8);
  for (int i : stored) {
    auto v = c->get_copy(key(i));
    INFO(key(i) << ": " << v.status().to_string());
    REQUIRE(v.is_ok());
    CHECK(*v == pattern(1 << 20, i));
  }
  auto s = c->stats();
  REQUIRE(s.is_ok());
  CHECK(s->evictions == 0);
  CHECK(s->keys == stored.size());
  CHECK(s->reservations == 0);  // refused two-phase puts left no reservation behind
}
