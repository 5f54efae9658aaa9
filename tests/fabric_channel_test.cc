// Messages on the libfabric endpoint (transport::Messages) and the request channel's fabric link,
// over tcp;ofi_rxm and shm on loopback. A case is skipped, saying why, only when the provider
// cannot be opened here.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "channel/fabric_link.h"
#include "channel/fabric_link_wire.h"
#include "channel/mock_link.h"
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
using namespace kvrdma::channel;

namespace {

using Bytes = std::vector<std::byte>;

Bytes pattern(size_t n, unsigned seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = std::byte((i * 131 + seed * 7 + (i >> 8)) & 0xff);
  return b;
}

std::span<const std::byte> view(const Bytes& b) { return {b.data(), b.size()}; }

// Polls `cond` until it holds or 20 s pass (every loop bounded).
template <typename F>
bool eventually(F cond) {
  auto end = Transport::Clock::now() + std::chrono::seconds(20);
  while (!cond()) {
    if (Transport::Clock::now() > end) return false;
    std::this_thread::yield();
  }
  return true;
}

// The transport completes every send by its deadline, so this wait ends (with a margin).
Status send_and_wait(Transport& t, Peer& peer, const LocalRegion& src, size_t offset, size_t len) {
  struct Result {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Status> status;
  };
  auto r = std::make_shared<Result>();  // the completion may outlive a failed wait
  t.messages()->send(peer, src, offset, len, deadline(10), [r](Status s) {
    std::lock_guard lock(r->mu);
    r->status = std::move(s);
    r->cv.notify_all();
  });
  std::unique_lock lock(r->mu);
  if (!r->cv.wait_until(lock, deadline(30), [&] { return r->status.has_value(); })) {
    return Status(Code::kDeadlineExceeded, "send did not complete");
  }
  return *r->status;
}

// A server transport with a link host, a client transport with an accepted link, and a thread
// that answers each request with its bytes reversed, as a channel thread would (polls, then
// sleeps on the host).
struct LinkPair {
  std::unique_ptr<Transport> server, client;
  std::unique_ptr<LinkHost> host;
  std::unique_ptr<ServerLink> server_link;
  std::unique_ptr<ClientLink> client_link;
  std::string accept;  // what the host answered at open
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> served{0};
  std::atomic<uint64_t> failed{0};  // complete() errors on the echo thread (checked at the end)
  std::thread echo;

  void start_echo() {
    echo = std::thread([this] {
      auto serve = [&](const IncomingRequest& in) {
        Bytes out(in.bytes.rbegin(), in.bytes.rend());
        if (!server_link->complete(in.slot, in.generation, view(out)).is_ok()) ++failed;
        ++served;
      };
      while (!stop) {
        if (server_link->take(64, serve) > 0) continue;
        host->prepare_sleep();
        if (server_link->take(64, serve) > 0) {
          host->cancel_sleep();
          continue;
        }
        host->sleep(Transport::Clock::now() + std::chrono::milliseconds(100));
      }
    });
  }

  void stop_echo() {
    stop = true;
    if (host) host->wake();
    if (echo.joinable()) echo.join();
  }

  ~LinkPair() { stop_echo(); }
};

std::unique_ptr<LinkPair> open_link(const std::string& provider, uint32_t slots = 32,
                                    size_t slot_bytes = 8192) {
  auto p = std::make_unique<LinkPair>();
  p->server = open_fabric(provider);
  p->client = open_fabric(provider);
  if (!p->server || !p->client) return nullptr;
  auto host = make_fabric_link_host(*p->server);
  REQUIRE(host.is_ok());
  p->host = std::move(*host);
  auto link = make_fabric_client_link(*p->client, slots, slot_bytes);
  REQUIRE(link.is_ok());
  p->client_link = std::move(*link);
  auto server_link = p->host->open(p->client_link->offer(), &p->accept);
  REQUIRE(server_link.is_ok());
  p->server_link = std::move(*server_link);
  REQUIRE(p->client_link->accept(p->accept).is_ok());
  return p;
}

// One request through the link, checked byte for byte against the echo's reversal.
void round_trip(LinkPair& p, uint32_t slot, uint64_t gen, const Bytes& request) {
  REQUIRE(p.client_link->post(slot, gen, view(request)).is_ok());
  p.client_link->ring();
  REQUIRE(p.client_link->wait(slot, gen, deadline()).is_ok());
  auto got = p.client_link->poll(slot, gen);
  Bytes want(request.rbegin(), request.rend());
  REQUIRE(got.size() == want.size());
  CHECK(std::memcmp(got.data(), want.data(), want.size()) == 0);
}

// Every slot of a 32-slot link in flight at once: posts make(slot) to each (generation
// gen + slot), rings the doorbell when `ring` (else the posts must go out without it), then checks
// each answer, byte for byte, against the echo's reversal of its own request.
template <typename MakeRequest>
void round_trip_all_slots(LinkPair& p, uint64_t gen, bool ring, MakeRequest make) {
  std::vector<Bytes> reqs;
  for (uint32_t s = 0; s < 32; ++s) {
    reqs.push_back(make(s));
    REQUIRE(p.client_link->post(s, gen + s, view(reqs.back())).is_ok());
  }
  if (ring) p.client_link->ring();
  for (uint32_t s = 0; s < 32; ++s) {
    REQUIRE(p.client_link->wait(s, gen + s, deadline()).is_ok());
    auto got = p.client_link->poll(s, gen + s);
    Bytes want(reqs[s].rbegin(), reqs[s].rend());
    REQUIRE(got.size() == want.size());
    CHECK(std::memcmp(got.data(), want.data(), want.size()) == 0);
  }
}

}  // namespace

TEST_CASE("fabric messages: sends and writes with data arrive byte-exact", "[fabric_channel]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto server = open_fabric(provider);
      auto client = open_fabric(provider);
      if (!server || !client) continue;
      REQUIRE(server->messages() != nullptr);
      CHECK(server->messages()->data_bytes() == 8);

      std::mutex mu;
      std::vector<Bytes> received;
      REQUIRE(server->messages()
                  ->listen(70000,
                           [&](std::span<const std::byte> m) {
                             std::lock_guard lock(mu);
                             received.emplace_back(m.begin(), m.end());
                           })
                  .is_ok());
      CHECK(server->messages()->listen(100, [](auto) {}).code() == Code::kFailedPrecondition);
      std::vector<uint64_t> data;
      client->messages()->on_remote_data([&](uint64_t d) {
        std::lock_guard lock(mu);
        data.push_back(d);
      });

      // Client to server: sizes on both sides of each provider's inject size, up to the limit.
      auto src = client->allocate(1 << 20);
      REQUIRE(src.is_ok());
      auto to_server = client->connect(server->address());
      REQUIRE(to_server.is_ok());
      const std::vector<size_t> sizes = {1, 32, 64, 65, 100, 4096, 4097, 8192, 70000};
      std::vector<Bytes> sent;
      for (size_t i = 0; i < sizes.size(); ++i) {
        sent.push_back(pattern(sizes[i], static_cast<unsigned>(i)));
        std::memcpy((*src)->data(), sent.back().data(), sizes[i]);
        REQUIRE(send_and_wait(*client, **to_server, **src, 0, sizes[i]).is_ok());
      }
      REQUIRE(eventually([&] {
        std::lock_guard lock(mu);
        return received.size() == sent.size();
      }));
      {
        std::lock_guard lock(mu);
        // One endpoint pair on one connection: messages arrive in the order they were sent.
        for (size_t i = 0; i < sent.size(); ++i) CHECK(received[i] == sent[i]);
      }

      // Server to client: a write with data, every size, the data and then the bytes checked.
      auto answers = server->allocate(1 << 20);
      auto area = client->allocate(1 << 20);
      REQUIRE(answers.is_ok());
      REQUIRE(area.is_ok());
      auto remote = (*server->connect(client->address()))->attach((*area)->descriptor());
      REQUIRE(remote.is_ok());
      for (size_t i = 0; i < sizes.size(); ++i) {
        Bytes b = pattern(sizes[i], static_cast<unsigned>(100 + i));
        std::memcpy((*answers)->data() + 4096, b.data(), b.size());
        std::memset((*area)->data() + 8192, 0, b.size());
        const uint64_t tag = 0xfeed000000000000ull | i;
        std::atomic<bool> done{false};
        server->messages()->write_with_data(**answers, 4096, *remote, 8192, b.size(), tag,
                                            deadline(), [&](Status s) {
                                              CHECK(s.is_ok());
                                              done = true;
                                            });
        REQUIRE(eventually([&] {
          std::lock_guard lock(mu);
          return !data.empty();
        }));
        {
          std::lock_guard lock(mu);
          CHECK(data.size() == 1);
          CHECK(data[0] == tag);
          data.clear();
        }
        // The target's completion proves delivery: the bytes are there already.
        CHECK(std::memcmp((*area)->data() + 8192, b.data(), b.size()) == 0);
        REQUIRE(eventually([&] { return done.load(); }));
      }
      // Out of range and empty writes are refused, nothing written.
      Status refused;
      server->messages()->write_with_data(**answers, 0, *remote, (1 << 20) - 10, 11, 1, deadline(),
                                          [&](Status s) { refused = s; });
      CHECK(refused.code() == Code::kInvalidArgument);
      server->messages()->write_with_data(**answers, 0, *remote, 0, 0, 1, deadline(),
                                          [&](Status s) { refused = s; });
      CHECK(refused.code() == Code::kInvalidArgument);
    }
  }
}

TEST_CASE("fabric link: requests and completions round-trip byte-exact, many in flight",
          "[fabric_channel]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto p = open_link(provider);
      if (!p) continue;
      CHECK(is_fabric_offer(p->client_link->offer()));
      CHECK_FALSE(is_mock_offer(p->client_link->offer()));
      p->start_echo();
      // One at a time, every size class up to the slot.
      uint64_t gen = 1;
      for (size_t n : {size_t{1}, size_t{40}, size_t{200}, size_t{4000}, size_t{8192}}) {
        round_trip(*p, 3, gen++, pattern(n, static_cast<unsigned>(n)));
      }
      // All 32 slots in flight at once, several rounds, each answer its own.
      for (int round = 0; round < 20; ++round) {
        round_trip_all_slots(*p, gen, true, [&](uint32_t s) {
          return pattern(64 + s * 37 + round, s + round * 32);
        });
        gen += 32;
      }
      // Full slots, until every receive buffer was used and handed back several times (4 of
      // ~1 MiB with multi-receive): none may be lost on the way.
      for (int round = 0; round < 24; ++round) {
        round_trip_all_slots(*p, gen, false,
                             [&](uint32_t s) { return pattern(8192, s * 7 + round); });
        gen += 32;
      }
      // Too large or out of range: refused, nothing sent.
      Bytes big(8193);
      CHECK(p->client_link->post(0, gen, view(big)).code() == Code::kInvalidArgument);
      CHECK(p->client_link->post(32, gen, view(big)).code() == Code::kInvalidArgument);
    }
  }
}

TEST_CASE("fabric link: a completion for a stale generation is ignored", "[fabric_channel]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto p = open_link(provider);
      if (!p) continue;
      Bytes req = pattern(100, 1);
      // The client gave up on generation 5 and posted 6 to the same slot.
      REQUIRE(p->client_link->post(2, 5, view(req)).is_ok());
      REQUIRE(p->client_link->post(2, 6, view(req)).is_ok());
      Bytes stale = pattern(50, 2), fresh = pattern(60, 3);
      REQUIRE(p->server_link->complete(2, 5, view(stale)).is_ok());
      // Nothing for 6 may appear: a bounded wait must run out.
      auto soon = Transport::Clock::now() + std::chrono::milliseconds(300);
      auto st = p->client_link->wait(2, 6, soon);
      CHECK(st.code() == Code::kDeadlineExceeded);
      CHECK(p->client_link->poll(2, 6).empty());
      CHECK(p->client_link->poll(2, 5).empty());
      REQUIRE(p->server_link->complete(2, 6, view(fresh)).is_ok());
      REQUIRE(p->client_link->wait(2, 6, deadline()).is_ok());
      auto got = p->client_link->poll(2, 6);
      REQUIRE(got.size() == fresh.size());
      CHECK(std::memcmp(got.data(), fresh.data(), fresh.size()) == 0);
      // A completion out of range is refused by the server end.
      CHECK(p->server_link->complete(32, 6, view(fresh)).code() == Code::kInvalidArgument);
      Bytes huge(8193);
      CHECK(p->server_link->complete(1, 6, view(huge)).code() == Code::kInvalidArgument);
    }
  }
}

TEST_CASE("fabric link: malformed messages are dropped without harm", "[fabric_channel]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto p = open_link(provider);
      if (!p) continue;
      // Learn the link's id and secret from a real request, then forge variants of its header.
      Bytes req = pattern(200, 9);
      REQUIRE(p->client_link->post(0, 1, view(req)).is_ok());
      std::vector<Bytes> taken;
      auto take_all = [&] {
        return p->server_link->take(64, [&](const IncomingRequest& in) {
          taken.emplace_back(in.bytes.begin(), in.bytes.end());
          CHECK(in.slot == 0);
          CHECK(in.generation == 1);
        });
      };
      REQUIRE(eventually([&] { return take_all() > 0; }));
      REQUIRE(taken.size() == 1);
      CHECK(taken[0] == req);
      // The link's id and secret, from the accept the client parsed.
      auto w = fabric_wire::words(p->accept, 4);
      REQUIRE(w);
      const uint32_t id = static_cast<uint32_t>(std::stoul(std::string((*w)[1])));
      const uint64_t secret = std::stoull(std::string((*w)[2]), nullptr, 16);
      auto raw_peer = p->client->connect(p->server->address());
      REQUIRE(raw_peer.is_ok());
      auto raw = p->client->allocate(1 << 20);
      REQUIRE(raw.is_ok());
      // Forge from scratch: wrong magic, unknown link, wrong secret, slot out of range, body
      // longer than a slot, too short for a header, longer than any receive buffer.
      std::vector<Bytes> forged;
      auto make = [](uint32_t magic, uint32_t link, uint64_t secret, uint32_t slot, size_t body) {
        fabric_wire::MessageHeader h{magic, link, secret, slot, 0, 7};
        Bytes b(sizeof h + body, std::byte{0x5a});
        std::memcpy(b.data(), &h, sizeof h);
        return b;
      };
      forged.push_back(make(0xdeadbeef, id, secret, 0, 10));
      forged.push_back(make(fabric_wire::kMagic, id + 1, secret, 0, 10));
      forged.push_back(make(fabric_wire::kMagic, id, secret ^ 1, 0, 10));
      forged.push_back(make(fabric_wire::kMagic, id, secret, 32, 10));
      forged.push_back(make(fabric_wire::kMagic, id, secret, 0xffffffff, 10));
      forged.push_back(make(fabric_wire::kMagic, id, secret, 0, 8193));
      forged.push_back(Bytes(7, std::byte{1}));
      forged.push_back(
          Bytes(sizeof(fabric_wire::MessageHeader) + kMaxFabricSlotBytes + 100, std::byte{2}));
      for (const Bytes& f : forged) {
        std::memcpy((*raw)->data(), f.data(), f.size());
        CHECK(send_and_wait(*p->client, **raw_peer, **raw, 0, f.size()).is_ok());
      }
      // Then a real request: it is the only one the server takes, and it still round-trips.
      p->start_echo();
      round_trip(*p, 4, 2, pattern(300, 4));
      p->stop_echo();
      CHECK(p->served.load() == 1);
      CHECK(p->failed.load() == 0);
    }
  }
}

TEST_CASE("fabric link: an idle open link costs no wake-ups beyond the idle rule",
          "[fabric_channel]") {
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto p = open_link(provider);
      if (!p) continue;
      p->start_echo();
      round_trip(*p, 0, 1, pattern(64, 1));
      // Let the shm listener's backoff reach its idle limit, as an idle server would: what is
      // measured is a rate, so the test watches for a fixed time.
      std::this_thread::sleep_for(std::chrono::seconds(1));
      auto [before, threads] = context_switches(kProgressThreadName);
      REQUIRE(threads == 2);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      auto after = context_switches(kProgressThreadName).first;
      INFO("wake-ups of the two idle progress threads in 0.5 s: " << after - before);
      // ~10 a second each at the idle limit; 1 ms polling would be ~1000.
      CHECK(after - before < 30);
      round_trip(*p, 0, 2, pattern(64, 2));
      p->stop_echo();
      CHECK(p->failed.load() == 0);
    }
  }
}

TEST_CASE("fabric link: without FI_MULTI_RECV a ring of one-message buffers serves the same",
          "[fabric_channel]") {
  // Verbs and efa may lack multi-receive; tcp and shm are made to do without it here.
  setenv("KVRDMA_FABRIC_NO_MULTI_RECV", "1", 1);
  for (std::string provider : {"tcp", "shm"}) {
    DYNAMIC_SECTION(provider) {
      auto p = open_link(provider);
      if (!p) continue;
      // A message longer than a buffer is truncated by the provider and dropped; its buffer is
      // posted again. Not over shm: its large-message path (cross-memory attach) stalls on a
      // truncating receive; shm always offers FI_MULTI_RECV, so it never runs without it.
      auto raw_peer = p->client->connect(p->server->address());
      REQUIRE(raw_peer.is_ok());
      auto raw = p->client->allocate(1 << 20);
      REQUIRE(raw.is_ok());
      const size_t too_long = sizeof(fabric_wire::MessageHeader) + kMaxFabricSlotBytes + 100;
      std::memset((*raw)->data(), 3, too_long);
      for (int i = 0; i < 3 && provider != "shm"; ++i) {
        CHECK(send_and_wait(*p->client, **raw_peer, **raw, 0, too_long).is_ok());
      }
      p->start_echo();
      // More requests than the ring has buffers, several rounds of all slots in flight.
      uint64_t gen = 1;
      for (int round = 0; round < 40; ++round) {
        round_trip_all_slots(*p, gen, false,
                             [&](uint32_t s) { return pattern(100 + s * 61, s + round); });
        gen += 32;
      }
      p->stop_echo();
      CHECK(p->served.load() == 40 * 32);
      CHECK(p->failed.load() == 0);
    }
  }
  unsetenv("KVRDMA_FABRIC_NO_MULTI_RECV");
}
