// FabricTransport on the providers this machine has (tcp;ofi_rxm and shm on loopback). A case is
// skipped, saying why, only when the provider cannot be opened here.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fabric_test_util.h"
#include "transport/fabric/fabric_transport.h"
#include "transport/transport.h"

using kvrdma::Code;
using kvrdma::Status;
using kvrdma::TransportOptions;
using namespace kvrdma::transport;
using kvrdma::testing::context_switches;
using kvrdma::testing::deadline;
using kvrdma::testing::open_fabric;

namespace {

void fill(std::byte* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i) p[i] = std::byte((i * 31 + seed) >> 3);
}

// Two transports over one provider, a source region on the first ("server"), a destination
// region on the second ("client") and the server's handle on the destination: what a write test
// starts from. Members go in reverse order, the handle first.
struct WritePair {
  std::unique_ptr<Transport> server, client;
  std::unique_ptr<LocalRegion> src, dst;
  std::shared_ptr<RemoteRegion> remote;
};

// nullopt (the caller skips its case; open_fabric() said why) when the provider cannot be opened
// here.
std::optional<WritePair> open_pair(const std::string& provider, size_t bytes) {
  WritePair p;
  p.server = open_fabric(provider);
  p.client = open_fabric(provider);
  if (!p.server || !p.client) return std::nullopt;
  auto src = p.server->allocate(bytes);
  auto dst = p.client->allocate(bytes);
  REQUIRE(src.is_ok());
  REQUIRE(dst.is_ok());
  p.src = std::move(*src);
  p.dst = std::move(*dst);
  p.remote = *(*p.server->connect(p.client->address()))->attach(p.dst->descriptor());
  return p;
}

}  // namespace

TEST_CASE("fabric: an idle transport's progress thread sleeps instead of waking every ms",
          "[fabric]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto p = open_pair(provider, 1 << 20);
      if (!p) continue;
      REQUIRE(write_and_wait(*p->server, *p->src, 0, p->remote, 0, 1 << 20, deadline()).is_ok());
      // Nothing in flight, nothing expected: over half a second of observation the two
      // progress threads wake a few times each (~10 in all, measured: their sleep grows to the
      // 100 ms idle limit), not ~500 each (a 1 ms poll).
      auto [before, threads] = context_switches(kProgressThreadName);
      REQUIRE(threads == 2);
      // Not synchronisation: what is measured is a rate, so the test watches for a fixed time.
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      auto after = context_switches(kProgressThreadName).first;
      INFO("wake-ups of the two idle progress threads in 0.5 s: " << after - before);
      CHECK(after - before < 200);
    }
  }
}

TEST_CASE("fabric: writes land byte-exact and are complete at the target on completion",
          "[fabric]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto server = open_fabric(provider);
      auto client = open_fabric(provider);
      if (!server || !client) continue;
      CHECK(server->kind().rfind("fabric/", 0) == 0);
      CHECK(server->kind() == client->kind());
      auto src = server->allocate(64 << 20);
      auto dst = client->allocate(64 << 20);
      REQUIRE(src.is_ok());
      REQUIRE(dst.is_ok());
      fill((*src)->data(), (*src)->size(), 5);
      auto peer = server->connect(client->address());
      REQUIRE(peer.is_ok());
      auto remote = (*peer)->attach((*dst)->descriptor());
      REQUIRE(remote.is_ok());
      for (size_t len : {size_t{1}, size_t{4096}, size_t{1} << 20, size_t{64} << 20}) {
        INFO(len);
        std::memset((*dst)->data(), 0, len);
        REQUIRE(write_and_wait(*server, **src, 0, *remote, 0, len, deadline()).is_ok());
        // The completion promised delivery: the bytes must already be there.
        CHECK(std::memcmp((*dst)->data(), (*src)->data(), len) == 0);
      }
      // An offset write into the middle.
      REQUIRE(write_and_wait(*server, **src, 100, *remote, 5000, 3000, deadline()).is_ok());
      CHECK(std::memcmp((*dst)->data() + 5000, (*src)->data() + 100, 3000) == 0);
    }
  }
}

TEST_CASE("fabric: out-of-range writes and bad descriptors are refused", "[fabric]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto t = open_fabric(provider);
      if (!t) continue;
      auto src = t->allocate(8192);
      auto dst = t->allocate(8192);
      REQUIRE(src.is_ok());
      REQUIRE(dst.is_ok());
      std::memset((*dst)->data(), 0x5a, 8192);
      auto peer = t->connect(t->address());
      REQUIRE(peer.is_ok());
      auto remote = (*peer)->attach((*dst)->descriptor());
      REQUIRE(remote.is_ok());
      CHECK(write_and_wait(*t, **src, 0, *remote, 8000, 200, deadline()).code() ==
            Code::kInvalidArgument);
      CHECK(write_and_wait(*t, **src, 8000, *remote, 0, 200, deadline()).code() ==
            Code::kInvalidArgument);
      CHECK(write_and_wait(*t, **src, 0, *remote, SIZE_MAX, 2, deadline()).code() ==
            Code::kInvalidArgument);
      for (int i = 0; i < 8192; ++i) REQUIRE((*dst)->data()[i] == std::byte{0x5a});
      CHECK((*peer)->attach("kvrdma-mock-v1 /kvrdma-1-0123456789abcdef 4096").status().code() ==
            Code::kInvalidArgument);
      CHECK((*peer)->attach("").status().code() == Code::kInvalidArgument);
      CHECK(t->connect("").status().code() == Code::kInvalidArgument);
    }
  }
}

TEST_CASE("fabric: concurrent writes from several threads", "[fabric]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto p = open_pair(provider, 16 << 20);
      if (!p) continue;
      fill(p->src->data(), p->src->size(), 9);
      std::atomic<int> failures{0};
      std::vector<std::thread> threads;
      for (int k = 0; k < 8; ++k) {
        threads.emplace_back([&, k] {
          for (int i = 0; i < 16; ++i) {
            size_t off = (static_cast<size_t>(k) << 21) + static_cast<size_t>(i) * (128 << 10);
            if (!write_and_wait(*p->server, *p->src, off, p->remote, off, 128 << 10, deadline())
                     .is_ok()) {
              ++failures;
            }
          }
        });
      }
      for (auto& th : threads) th.join();
      CHECK(failures == 0);
      CHECK(std::memcmp(p->src->data(), p->dst->data(), 16 << 20) == 0);
    }
  }
}

TEST_CASE("fabric: a write to a process that has exited fails within its deadline", "[fabric]") {
  for (std::string provider : {"tcp"}) {
    DYNAMIC_SECTION(provider) {
      auto server = open_fabric(provider);
      if (!server) continue;
      std::string address, descriptor;
      {
        auto gone = open_fabric(provider);
        auto region = gone->allocate(1 << 20);
        REQUIRE(region.is_ok());
        address = gone->address();
        descriptor = (*region)->descriptor();
      }
      auto src = server->allocate(1 << 20);
      REQUIRE(src.is_ok());
      auto peer = server->connect(address);
      REQUIRE(peer.is_ok());
      auto remote = (*peer)->attach(descriptor);
      REQUIRE(remote.is_ok());
      auto start = Transport::Clock::now();
      // The write fails no later than its deadline; a short one keeps the case quick.
      Status s = write_and_wait(*server, **src, 0, *remote, 0, 1 << 20, deadline(1));
      CHECK_FALSE(s.is_ok());
      CHECK(Transport::Clock::now() - start < std::chrono::seconds(10));
    }
  }
}

TEST_CASE("fabric: descriptors and addresses are parsed strictly", "[fabric]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto t = open_fabric(provider);
      if (!t) continue;
      auto dst = t->allocate(8192);
      REQUIRE(dst.is_ok());
      auto peer = t->connect(t->address());
      REQUIRE(peer.is_ok());
      const std::string good = (*dst)->descriptor();
      REQUIRE((*peer)->attach(good).is_ok());
      // Trailing or doubled spaces, signs, an empty key list, a region that wraps the address
      // space: each is refused, never guessed at.
      for (const std::string& bad : {good + " ", good + "\n", " " + good, good + ",",
                                     std::string("kvrdma-fabric-v2 ffffffffffffffff 8192 1 1"),
                                     std::string("kvrdma-fabric-v2 1000 -8192 1 1"),
                                     std::string("kvrdma-fabric-v2 1000 8192 1 "),
                                     std::string("kvrdma-fabric-v2 1000 8192 2 1"),
                                     std::string("kvrdma-fabric-v2  1000 8192 1 1")}) {
        INFO("descriptor '" << bad << "'");
        CHECK((*peer)->attach(bad).status().code() == Code::kInvalidArgument);
      }
      // An address cut short (fi_av_insert would read past its end), padded, or with a rail
      // count that does not match its bytes.
      const std::string addr = t->address();
      for (const std::string& bad : {addr.substr(0, addr.size() - 1), addr + "x", addr.substr(0, 5),
                                     std::string("kvf1") + '\0'}) {
        INFO("address of " << bad.size() << " bytes");
        CHECK(t->connect(bad).status().code() == Code::kInvalidArgument);
      }
    }
  }
}

TEST_CASE("fabric: --num-domains stripes a write over several rails, byte-exact", "[fabric]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto server = open_fabric(provider, 3);
      auto client = open_fabric(provider, 2);
      if (!server || !client) continue;
      CHECK_THAT(server->description(), Catch::Contains("3 rails"));
      const size_t len = 40 << 20;  // five 8 MiB pieces: every rail on both sides gets some
      auto src = server->allocate(len);
      auto dst = client->allocate(len);
      REQUIRE(src.is_ok());
      REQUIRE(dst.is_ok());
      fill((*src)->data(), len, 7);
      auto peer = server->connect(client->address());
      REQUIRE(peer.is_ok());
      auto remote = (*peer)->attach((*dst)->descriptor());
      REQUIRE(remote.is_ok());
      auto incoming = client->expect_writes();
      REQUIRE(write_and_wait(*server, **src, 0, *remote, 0, len, deadline()).is_ok());
      CHECK(std::memcmp((*src)->data(), (*dst)->data(), len) == 0);
      TransportOptions none;
      none.mock = false;
      none.provider = provider;
      none.num_domains = 0;
      CHECK(make_transport(none).status().code() == Code::kInvalidArgument);
    }
  }
}
