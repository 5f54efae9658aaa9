// One suite for every transport: the mock always, libfabric shm and tcp whenever make_transport
// can open them (otherwise each case says with a WARN why it skipped them). A behaviour the mock
// shows and a real transport does not is a bug in one of them.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "transport_cases.h"

using kvrdma::Code;
using kvrdma::Status;
using namespace kvrdma::transport;
using namespace kvrdma::transport::testing;

namespace {

// Runs `body` once per available transport, each in its own section named after it.
template <typename Body>
void for_each_transport(Body&& body) {
  for (const TransportCase& c : transport_cases()) {
    DYNAMIC_SECTION(c.name) {
      auto pair = make_transport_pair(c.options);
      if (!pair) {
        WARN("skipping the " << c.name
                             << " transport: make_transport failed: " << pair.status().message());
        continue;
      }
      INFO(c.name << ": " << pair->server->description() << ", address of "
                  << pair->server->address().size() << " bytes");
      auto to_server = pair->client->connect(pair->server->address());
      REQUIRE(to_server.status().message() == "");
      auto to_client = pair->server->connect(pair->client->address());
      REQUIRE(to_client.status().message() == "");
      pair->client_to_server = *to_server;
      pair->server_to_client = *to_client;
      body(*pair);
    }
  }
}

std::unique_ptr<LocalRegion> allocate(Transport& t, size_t len) {
  auto r = t.allocate(len);
  INFO("allocate(" << len << "): " << r.status().message());
  REQUIRE(r.is_ok());
  return std::move(*r);
}

std::shared_ptr<RemoteRegion> attach(Peer& peer, const LocalRegion& region) {
  auto r = peer.attach(region.descriptor());
  INFO("attach: " << r.status().message());
  REQUIRE(r.is_ok());
  return *r;
}

}  // namespace

TEST_CASE("transport: both ends report the same kind, and say what they are", "[transport]") {
  for_each_transport([](TransportPair& p) {
    CHECK_FALSE(p.server->kind().empty());
    CHECK(p.server->kind() == p.client->kind());
    CHECK_FALSE(p.server->description().empty());
    CHECK_FALSE(p.server->address().empty());
  });
}

TEST_CASE("transport: allocate gives page-aligned memory of at least len", "[transport]") {
  for_each_transport([](TransportPair& p) {
    std::set<std::string> descriptors;
    for (size_t len : {size_t{1}, kPage - 1, kPage, kPage + 1, (size_t{1} << 20) + 1}) {
      auto r = allocate(*p.server, len);
      INFO("len " << len);
      CHECK(reinterpret_cast<uintptr_t>(r->data()) % kPage == 0);
      CHECK(r->size() >= len);
      CHECK(r->size() % kPage == 0);
      CHECK_FALSE(r->descriptor().empty());
      std::memset(r->data(), 0xab, r->size());  // every byte is ours to write
      CHECK(r->data()[r->size() - 1] == std::byte{0xab});
      descriptors.insert(r->descriptor());
    }
    CHECK(descriptors.size() == 5);
    CHECK(p.server->allocate(0).status().code() == Code::kInvalidArgument);
    CHECK_FALSE(p.server->allocate(SIZE_MAX).is_ok());
  });
}

TEST_CASE("transport: writes land byte-exact, 1 B to 64 MiB, in both directions", "[transport]") {
  for_each_transport([](TransportPair& p) {
    constexpr size_t kSize = size_t{64} << 20;
    auto src = allocate(*p.client, kSize);
    auto dst = allocate(*p.server, kSize);
    fill_pattern(src->data(), kSize, 1);
    auto remote = attach(*p.client_to_server, *dst);
    CHECK(remote->size() == dst->size());
    struct Shape {
      size_t len, src_offset, dst_offset;
    };
    for (Shape s : {Shape{1, 0, 0}, Shape{1, 5, kSize - 1}, Shape{7, 3, 11}, Shape{kPage, 0, kPage},
                    Shape{kPage + 1, 1, 3 * kPage - 1}, Shape{(64 << 10) + 13, 999, 77},
                    Shape{(1 << 20) + 1, kPage, 12345},
                    Shape{(16 << 20) + 3, 1, kSize - (16 << 20) - 3}, Shape{kSize, 0, 0}}) {
      INFO("len " << s.len << " from " << s.src_offset << " to " << s.dst_offset);
      std::memset(dst->data(), 0xee, kSize);
      REQUIRE(write_and_wait(*p.client, *src, s.src_offset, remote, s.dst_offset, s.len, deadline())
                  .message() == "");
      CHECK(std::memcmp(dst->data() + s.dst_offset, src->data() + s.src_offset, s.len) == 0);
      // Nothing outside the range moved.
      CHECK(first_not(dst->data(), s.dst_offset, std::byte{0xee}) == s.dst_offset);
      size_t end = s.dst_offset + s.len;
      CHECK(first_not(dst->data() + end, kSize - end, std::byte{0xee}) == kSize - end);
    }
    // The server writes into the client's memory just the same (the GET direction).
    auto back = attach(*p.server_to_client, *src);
    fill_pattern(dst->data(), kSize, 2);
    REQUIRE(write_and_wait(*p.server, *dst, 0, back, 0, kSize, deadline()).message() == "");
    CHECK(first_pattern_mismatch(src->data(), kSize, 2) == kSize);
  });
}

TEST_CASE("transport: a write of 0 bytes completes OK, even at the very end", "[transport]") {
  for_each_transport([](TransportPair& p) {
    auto src = allocate(*p.client, kPage);
    auto dst = allocate(*p.server, kPage);
    auto remote = attach(*p.client_to_server, *dst);
    CHECK(write_and_wait(*p.client, *src, 0, remote, 0, 0, deadline()).is_ok());
    CHECK(write_and_wait(*p.client, *src, kPage, remote, kPage, 0, deadline()).is_ok());
  });
}

TEST_CASE("transport: out-of-range writes fail with INVALID_ARGUMENT and write nothing",
          "[transport]") {
  for_each_transport([](TransportPair& p) {
    auto src = allocate(*p.client, 2 * kPage);
    auto dst = allocate(*p.server, 2 * kPage);
    const size_t n = dst->size();
    std::memset(dst->data(), 0x5a, n);
    fill_pattern(src->data(), src->size(), 3);
    auto remote = attach(*p.client_to_server, *dst);
    struct Shape {
      size_t src_offset, dst_offset, len;
      const char* what;
    };
    for (Shape s :
         {Shape{0, n - 10, 20, "dst tail overruns"}, Shape{n - 10, 0, 20, "src tail overruns"},
          Shape{0, n + 1, 0, "dst offset past the end"},
          Shape{n + 1, 0, 0, "src offset past the end"}, Shape{0, 0, n + 1, "len larger than both"},
          Shape{0, UINT64_MAX, 2, "dst offset wraps"}, Shape{UINT64_MAX, 0, 2, "src offset wraps"},
          Shape{0, 1, UINT64_MAX, "len wraps"},
          Shape{UINT64_MAX, UINT64_MAX, UINT64_MAX, "everything maximal"},
          Shape{0, kPage, UINT64_MAX - kPage + 1, "dst offset + len == 2^64"}}) {
      INFO(s.what << ": src_offset " << s.src_offset << ", dst_offset " << s.dst_offset << ", len "
                  << s.len);
      Status st =
          write_and_wait(*p.client, *src, s.src_offset, remote, s.dst_offset, s.len, deadline());
      CHECK(st.code() == Code::kInvalidArgument);
      CHECK_FALSE(st.message().empty());
      REQUIRE(first_not(dst->data(), n, std::byte{0x5a}) == n);
    }
  });
}

TEST_CASE("transport: malformed descriptors are refused with INVALID_ARGUMENT", "[transport]") {
  for_each_transport([](TransportPair& p) {
    auto dst = allocate(*p.server, kPage);
    const std::string good = dst->descriptor();
    const std::string bad[] = {
        "",
        "garbage",
        std::string("\0\1\2\3", 4),
        std::string(4096, 'x'),
        good.substr(0, good.size() / 2),
        good + " 1",
        std::string(good.size(), '\xff'),
    };
    for (const std::string& d : bad) {
      INFO("descriptor of " << d.size() << " bytes");
      CHECK(p.client_to_server->attach(d).status().code() == Code::kInvalidArgument);
    }
  });
}

TEST_CASE("transport: a descriptor of another transport kind is refused", "[transport]") {
  auto mock = make_transport(transport_cases()[0].options);
  REQUIRE(mock.is_ok());
  auto mock_region = (*mock)->allocate(kPage);
  REQUIRE(mock_region.is_ok());
  for_each_transport([&](TransportPair& p) {
    if (p.server->kind() == (*mock)->kind()) return;
    // Each side must refuse the other's bytes, never map or write through them.
    CHECK(p.client_to_server->attach((*mock_region)->descriptor()).status().code() ==
          Code::kInvalidArgument);
    auto fabric_region = allocate(*p.server, kPage);
    auto mock_peer = (*mock)->connect((*mock)->address());
    REQUIRE(mock_peer.is_ok());
    CHECK((*mock_peer)->attach(fabric_region->descriptor()).status().code() ==
          Code::kInvalidArgument);
    CHECK((*mock)->connect(p.server->address()).status().code() == Code::kInvalidArgument);
  });
}

TEST_CASE("transport: a sealed region still takes writes from peers already attached",
          "[transport]") {
  for_each_transport([](TransportPair& p) {
    auto src = allocate(*p.client, kPage);
    auto dst = allocate(*p.server, kPage);
    auto remote = attach(*p.client_to_server, *dst);
    dst->seal();
    dst->seal();  // idempotent
    fill_pattern(src->data(), kPage, 4);
    REQUIRE(write_and_wait(*p.client, *src, 0, remote, 0, kPage, deadline()).message() == "");
    CHECK(first_pattern_mismatch(dst->data(), kPage, 4) == kPage);
  });
}

TEST_CASE("transport: concurrent writes from several threads into disjoint ranges", "[transport]") {
  for_each_transport([](TransportPair& p) {
    constexpr int kThreads = 4;
    constexpr int kWritesPerThread = 64;
    constexpr size_t kChunk = 3 * kPage + 17;  // unaligned, so pieces straddle pages
    constexpr size_t kSize = kThreads * kWritesPerThread * kChunk;
    auto src = allocate(*p.client, kSize);
    auto dst = allocate(*p.server, kSize);
    fill_pattern(src->data(), kSize, 5);
    std::memset(dst->data(), 0, dst->size());
    auto remote = attach(*p.client_to_server, *dst);

    // Shared with the completions, which may run after a failed wait below.
    struct Done {
      std::mutex mu;
      std::condition_variable cv;
      int completed = 0;
      int failed = 0;
      std::string first_error;
    };
    auto done = std::make_shared<Done>();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kWritesPerThread; ++i) {
          // Interleave the threads' chunks so neighbours are written by different threads.
          size_t off = static_cast<size_t>(i * kThreads + t) * kChunk;
          p.client->write(*src, off, remote, off, kChunk, deadline(), [done](Status s) {
            std::lock_guard lock(done->mu);
            ++done->completed;
            if (!s.is_ok() && done->failed++ == 0) done->first_error = s.message();
            done->cv.notify_all();
          });
        }
      });
    }
    for (auto& th : threads) th.join();
    std::unique_lock lock(done->mu);
    bool all = done->cv.wait_until(lock, deadline(),
                                   [&] { return done->completed == kThreads * kWritesPerThread; });
    REQUIRE(all);
    CHECK(done->failed == 0);
    CHECK(done->first_error == "");
    CHECK(first_pattern_mismatch(dst->data(), kSize, 5) == kSize);
    CHECK(first_not(dst->data() + kSize, dst->size() - kSize, std::byte{0}) == dst->size() - kSize);
  });
}
