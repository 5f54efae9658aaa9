// The server checked against a reference model: a full pool under concurrent PUTs, and a seeded
// random mix of put/get/delete/TTL from several clients, each owning its keys so the model is
// exact.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "integration/harness.h"
#include "integration/test_client.h"
#include "kvrdma/client.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using namespace kvrdma::testing;
using Steady = std::chrono::steady_clock;

namespace {

// Fails listing every problem. (UNSCOPED_INFO would not do: the first CHECK after it, passing or
// not, takes its messages.)
void check_no_problems(const std::vector<std::string>& problems) {
  INFO(fmt::format("{}", fmt::join(problems, "\n")));
  CHECK(problems.empty());
}

std::unique_ptr<Client> connect_to(const ServerProcess& server, uint64_t buffer_mb = 8) {
  ClientOptions o;
  o.server_addr = server.address();
  o.buffer_bytes = buffer_mb << 20;
  o.timeout_ms = 20000;
  apply_test_transport(o.transport);
  return connect_client(o);
}

// Fills an 8 MiB pool from 4 threads; returns what each successful put stored.
std::map<std::string, std::string> fill(const ServerProcess& server, bool expect_refusal) {
  std::mutex mu;
  std::map<std::string, std::string> stored;
  std::vector<std::string> problems;
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<Client>> clients;
  for (int t = 0; t < 4; ++t) clients.push_back(connect_to(server));
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int refused = 0;
      for (int i = 0; i < 200 && refused < 3; ++i) {
        std::string key = fmt::format("fill-{}-{}", t, i);
        std::string value = pattern((i % 2 ? 100 << 10 : 3000 + i), unsigned(t * 1000 + i));
        kvrdma::Status s = clients[t]->put(key, value);
        std::lock_guard lock(mu);
        if (s.is_ok()) {
          stored[key] = value;
        } else if (s.code() == Code::kResourceExhausted && expect_refusal) {
          ++refused;
        } else {
          problems.push_back(fmt::format("put {}: {}", key, s.to_string()));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  check_no_problems(problems);
  return stored;
}

}  // namespace

TEST_CASE("model: a full pool with --eviction none refuses and keeps every earlier value",
          "[model]") {
  ServerProcess server({"--memory-mb", "8", "--eviction", "none"});
  auto stored = fill(server, true);
  auto c = connect_to(server);
  auto stats = c->stats();
  REQUIRE(stats.is_ok());
  CHECK(stats->evictions == 0);
  CHECK(stats->keys == stored.size());
  // Refusal happened: one more large value does not fit.
  CHECK(c->put("one-more", pattern(1 << 20, 7)).code() == Code::kResourceExhausted);
  for (const auto& [key, value] : stored) {
    auto got = c->get_copy(key);
    INFO(key << ": " << got.status().to_string());
    REQUIRE(got.is_ok());
    CHECK(*got == value);
  }
}

TEST_CASE("model: a full pool with --eviction lru evicts, every readable value is exact",
          "[model]") {
  ServerProcess server({"--memory-mb", "8", "--eviction", "lru"});
  auto stored = fill(server, false);
  auto c = connect_to(server);
  auto stats = c->stats();
  REQUIRE(stats.is_ok());
  CHECK(stats->evictions > 0);
  size_t readable = 0;
  for (const auto& [key, value] : stored) {
    auto got = c->get_copy(key);
    if (!got) {
      CHECK(got.status().code() == Code::kNotFound);
      continue;
    }
    ++readable;
    CHECK(*got == value);
  }
  CHECK(readable > 0);
}

TEST_CASE("model: seeded random put/get/delete/TTL from 4 clients matches the model", "[model]") {
  const uint64_t seed = std::random_device{}();
  INFO("seed " << seed << " (each thread uses seed + its index)");
  std::printf("model test seed %llu\n", static_cast<unsigned long long>(seed));
  ServerProcess server({"--memory-mb", "256", "--eviction", "none", "--sweep-interval-ms", "20"});
  constexpr int kClients = 4, kOps = 1500, kKeys = 24;

  // What a key may hold: the value a put stored, and the window in which its TTL ends.
  struct Entry {
    std::string value;
    Steady::time_point earliest_expiry = Steady::time_point::max();  // present before this
    Steady::time_point latest_expiry = Steady::time_point::max();    // gone after this
  };
  using Model = std::map<std::string, Entry>;
  std::vector<Model> models(kClients);
  std::vector<std::vector<std::string>> problems(kClients);
  std::vector<std::unique_ptr<Client>> clients;
  for (int t = 0; t < kClients; ++t) clients.push_back(connect_to(server));

  // Checks a get against the model; `start`/`end` bracket the call.
  auto check = [](std::vector<std::string>& out, const Model& m, const std::string& key,
                  const kvrdma::Result<std::string>& got, Steady::time_point start,
                  Steady::time_point end) {
    auto it = m.find(key);
    if (it == m.end()) {
      if (got.is_ok()) out.push_back(fmt::format("{}: deleted or never put, yet found", key));
      else if (got.status().code() != Code::kNotFound) out.push_back(got.status().to_string());
      return;
    }
    const Entry& e = it->second;
    if (got.is_ok()) {
      if (*got != e.value) out.push_back(fmt::format("{}: torn or stale value", key));
      if (start > e.latest_expiry) out.push_back(fmt::format("{}: found after its TTL", key));
    } else if (got.status().code() != Code::kNotFound) {
      out.push_back(fmt::format("{}: {}", key, got.status().to_string()));
    } else if (end < e.earliest_expiry) {
      out.push_back(fmt::format("{}: lost before its TTL", key));
    }
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      Model& m = models[t];
      Client& c = *clients[t];
      for (int op = 0; op < kOps; ++op) {
        std::string key = fmt::format("m{}-{}", t, rng() % kKeys);
        auto r = rng() % 100;
        if (r < 40) {
          size_t size = rng() % 10 == 0 ? (rng() % (512 << 10)) + 1 : (rng() % 4096) + 1;
          uint64_t ttl = rng() % 8 == 0 ? 1 + rng() % 200 : 0;  // ms
          std::string value = pattern(size, static_cast<unsigned>(rng()));
          auto start = Steady::now();
          kvrdma::Status s = c.put(key, value, ttl);
          auto end = Steady::now();
          if (!s.is_ok()) {
            problems[t].push_back(fmt::format("put {}: {}", key, s.to_string()));
            continue;
          }
          Entry e{value};
          if (ttl) {
            e.earliest_expiry = start + std::chrono::milliseconds(ttl);
            e.latest_expiry = end + std::chrono::milliseconds(ttl) + std::chrono::milliseconds(50);
          }
          m[key] = std::move(e);
        } else if (r < 85) {
          auto start = Steady::now();
          auto got = c.get_copy(key);
          check(problems[t], m, key, got, start, Steady::now());
        } else {
          kvrdma::Status s = c.del(key);
          if (!s.is_ok() && s.code() != Code::kNotFound) {
            problems[t].push_back(fmt::format("delete {}: {}", key, s.to_string()));
          }
          m.erase(key);
        }
      }
    });
  }
  for (auto& th : threads) th.join();

  // The end state: every key of every client, read once more.
  auto c = connect_to(server);
  std::vector<std::string> final_problems;
  for (int t = 0; t < kClients; ++t) {
    for (int k = 0; k < kKeys; ++k) {
      std::string key = fmt::format("m{}-{}", t, k);
      auto start = Steady::now();
      auto got = c->get_copy(key);
      check(final_problems, models[t], key, got, start, Steady::now());
    }
  }
  for (const auto& list : problems) check_no_problems(list);
  check_no_problems(final_problems);
  auto stats = c->stats();
  REQUIRE(stats.is_ok());
  CHECK(stats->evictions == 0);
  // A clean stop: exit code 0, which under LeakSanitizer (scripts/test) also means no leak.
  CHECK(server.stop() == 0);
}
