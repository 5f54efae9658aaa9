// The server's request channel in process: a raw mock link (what a hostile or careless client
// controls) next to well-behaved kvrdma::Clients, against a real kvrdma::Server.
#include <catch2/catch.hpp>

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "channel/codec.h"
#include "channel/mock_link.h"
#include "kv_cache.grpc.pb.h"
#include "kvrdma/client.h"
#include "kvrdma/server.h"
#include "server/channel_service.h"
#include "thread_activity.h"
#include "transport/mock_transport.h"
#include "transport/shm_object.h"

namespace ch = kvrdma::channel;
using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using kvrdma::Server;
using kvrdma::ServerOptions;

namespace {

constexpr size_t kSlot = 4096;
constexpr uint32_t kSlots = 8;

std::unique_ptr<Server> start_server() {
  ServerOptions o;
  o.listen_addr = "127.0.0.1:0";
  o.memory_bytes = 16 << 20;
  auto s = Server::start(o);
  REQUIRE(s.is_ok());
  return std::move(s).value();
}

std::unique_ptr<Client> connect(const Server& server) {
  ClientOptions o;
  o.server_addr = server.address();
  o.buffer_bytes = 4 << 20;
  o.timeout_ms = 20000;
  auto c = Client::connect(o);
  REQUIRE(c.is_ok());
  return std::move(c).value();
}

std::string pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7) & 0xff);
  return s;
}

// A session opened by raw Hello with a test-made link; the test maps the slot region too.
struct RawSession {
  std::unique_ptr<kvrdma::transport::Transport> transport;
  std::unique_ptr<kvrdma::transport::LocalRegion> buffer;
  std::unique_ptr<ch::ClientLink> link;
  kvrdma::transport::shm::Mapping region;  // the same slot region, for scribbling
  uint64_t session_id = 0;
  uint64_t gen = 0;

  // Sends `r` in `slot` and waits for its answer; the bytes go to `keep`.
  ch::Response call(ch::Request r, uint32_t slot, std::string* keep) {
    r.slot = slot;
    r.generation = ++gen;
    std::string w;
    REQUIRE(ch::encode(r, kSlot, &w).is_ok());
    REQUIRE(link->post(slot, r.generation,
                       std::span(reinterpret_cast<const std::byte*>(w.data()), w.size()))
                .is_ok());
    link->ring();
    REQUIRE(link->wait(slot, r.generation, ch::Clock::now() + std::chrono::seconds(10)).is_ok());
    auto b = link->poll(slot, r.generation);
    keep->assign(reinterpret_cast<const char*>(b.data()), b.size());
    auto d = ch::decode_response(std::span(reinterpret_cast<const std::byte*>(keep->data()),
                                           keep->size()),
                                 kSlot);
    REQUIRE(d.is_ok());
    CHECK(d->generation == r.generation);
    return *d;
  }
};

RawSession open_raw(const Server& server) {
  RawSession s;
  s.transport = kvrdma::transport::make_mock_transport();
  auto buf = s.transport->allocate(1 << 20);
  REQUIRE(buf.is_ok());
  s.buffer = std::move(*buf);
  auto link = ch::make_mock_client_link(kSlots, kSlot);
  REQUIRE(link.is_ok());
  s.link = std::move(*link);
  // "kvrdma-chan-mock-v1 <name> <size> ..."
  std::string offer = s.link->offer();
  std::istringstream words(offer);
  std::string tag, name;
  size_t size = 0;
  words >> tag >> name >> size;
  auto map = kvrdma::transport::shm::open_object(name, size);
  REQUIRE(map.is_ok());
  s.region = std::move(*map);
  auto stub = kvrdma::v1::KvCache::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  kvrdma::v1::HelloRequest req;
  req.set_client_id(77);
  req.set_transport_kind(s.transport->kind());
  req.set_transport_address(s.transport->address());
  req.set_memory_descriptor(s.buffer->descriptor());
  req.set_region_size(s.buffer->size());
  req.set_channel_offer(offer);
  kvrdma::v1::HelloReply reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Status st = stub->Hello(&ctx, req, &reply);
  REQUIRE(st.ok());
  INFO(reply.channel_refused());
  REQUIRE_FALSE(reply.channel_accept().empty());
  REQUIRE(s.link->accept(reply.channel_accept()).is_ok());
  s.session_id = reply.session_id();
  return s;
}

}  // namespace

TEST_CASE("channel service: PUT, GET, GET_MANY and DELETE over a raw link, byte for byte",
          "[channel]") {
  auto server = start_server();
  RawSession s = open_raw(*server);
  std::string keep;
  const std::string v1 = pattern(3000, 1), v2 = pattern(10000, 2);
  ch::Request put;
  put.op = ch::Op::kPut;
  put.key = "a";
  put.value = v1;
  CHECK(s.call(put, 0, &keep).code == Code::kOk);
  // Too large for a 4 KiB slot: stored by a Client (whose slots are larger, or gRPC).
  REQUIRE(connect(*server)->put("b", v2).is_ok());

  ch::Request get;
  get.op = ch::Op::kGet;
  get.key = "a";
  ch::Response r = s.call(get, 2, &keep);
  REQUIRE(r.code == Code::kOk);
  REQUIRE(r.results.size() == 1);
  CHECK((r.results[0].flags & ch::kFlagInline) != 0);
  CHECK(r.results[0].inline_bytes == v1);

  SECTION("a value too large for the slot is written into the receive buffer") {
    get.key = "b";
    r = s.call(get, 3, &keep);
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0].flags == 0);  // not inline, not written: offer room
    CHECK(r.results[0].value_len == v2.size());
    get.dest_offset = 8192;
    get.dest_capacity = 16384;
    r = s.call(get, 3, &keep);
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0].flags == ch::kFlagWritten);
    CHECK(std::string_view(reinterpret_cast<const char*>(s.buffer->data()) + 8192, v2.size()) ==
          v2);
  }
  SECTION("a destination outside the registered buffer is refused, nothing written") {
    get.key = "b";
    get.dest_offset = (1 << 20) - 100;
    get.dest_capacity = 16384;
    r = s.call(get, 3, &keep);
    CHECK(r.code == Code::kInvalidArgument);
    CHECK(r.message.find("outside") != std::string_view::npos);
  }
  SECTION("GET_MANY answers each item in order") {
    ch::Request many;
    many.op = ch::Op::kGetMany;
    many.items = {{"a", 0, 0, 0}, {"nope", 0, 0, 0}, {"b", 0, 0, 0}};
    r = s.call(many, 4, &keep);
    REQUIRE(r.code == Code::kOk);
    REQUIRE(r.results.size() == 3);
    CHECK(r.results[0].inline_bytes == v1);
    CHECK(r.results[1].code == Code::kNotFound);
    CHECK(r.results[2].code == Code::kOk);
    CHECK(r.results[2].value_len == v2.size());
  }
  SECTION("DELETE, then the key is gone") {
    ch::Request del;
    del.op = ch::Op::kDelete;
    del.key = "a";
    CHECK(s.call(del, 5, &keep).code == Code::kOk);
    CHECK(s.call(del, 5, &keep).code == Code::kNotFound);
    get.key = "a";
    CHECK(s.call(get, 6, &keep).code == Code::kNotFound);
  }
  SECTION("a request naming another slot or generation, or a dest_region, is refused") {
    auto raw = [&](ch::Request rq, uint32_t post_slot) {
      const uint64_t g = ++s.gen;
      rq.generation = rq.generation ? rq.generation : g;
      std::string w;
      REQUIRE(ch::encode(rq, kSlot, &w).is_ok());
      REQUIRE(s.link
                  ->post(post_slot, g,
                         std::span(reinterpret_cast<const std::byte*>(w.data()), w.size()))
                  .is_ok());
      s.link->ring();
      REQUIRE(s.link->wait(post_slot, g, ch::Clock::now() + std::chrono::seconds(10)).is_ok());
      auto d = ch::decode_response(s.link->poll(post_slot, g), kSlot);
      REQUIRE(d.is_ok());
      return d->code;
    };
    ch::Request rq = get;
    rq.slot = 5;  // posted in slot 6
    CHECK(raw(rq, 6) == Code::kInvalidArgument);
    rq.slot = 6;
    rq.generation = 1;  // not the generation it was posted under
    CHECK(raw(rq, 6) == Code::kInvalidArgument);
    rq.generation = 0;
    rq.dest_region = 3;
    CHECK(raw(rq, 6) == Code::kInvalidArgument);
    // The stored value is intact.
    r = s.call(get, 2, &keep);
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0].inline_bytes == v1);
  }
  SECTION("undecodable bytes get INVALID_ARGUMENT in their slot") {
    const std::string junk(200, '\x55');
    const uint64_t g = ++s.gen;
    REQUIRE(
        s.link->post(7, g, std::span(reinterpret_cast<const std::byte*>(junk.data()), junk.size()))
            .is_ok());
    s.link->ring();
    REQUIRE(s.link->wait(7, g, ch::Clock::now() + std::chrono::seconds(10)).is_ok());
    auto b = s.link->poll(7, g);
    auto d = ch::decode_response(b, kSlot);
    REQUIRE(d.is_ok());
    CHECK(d->code == Code::kInvalidArgument);
  }
}

TEST_CASE("channel service: a stale completion is never taken for a newer request", "[channel]") {
  auto server = start_server();
  RawSession s = open_raw(*server);
  std::string keep;
  ch::Request put;
  put.op = ch::Op::kPut;
  put.key = "k";
  put.value = "old";
  s.call(put, 0, &keep);  // generation 1 answered in slot 0
  // Generation 2 posted; until the server answers it, slot 0 holds generation 1's completion,
  // which poll() must not return for generation 2.
  ch::Request get;
  get.op = ch::Op::kGet;
  get.key = "k";
  get.slot = 0;
  get.generation = ++s.gen;
  std::string w;
  REQUIRE(ch::encode(get, kSlot, &w).is_ok());
  CHECK(s.link->poll(0, get.generation).empty());
  CHECK_FALSE(s.link->poll(0, get.generation - 1).empty());
  REQUIRE(s.link
              ->post(0, get.generation,
                     std::span(reinterpret_cast<const std::byte*>(w.data()), w.size()))
              .is_ok());
  s.link->ring();
  REQUIRE(s.link->wait(0, get.generation, ch::Clock::now() + std::chrono::seconds(10)).is_ok());
  auto d = ch::decode_response(s.link->poll(0, get.generation), kSlot);
  REQUIRE(d.is_ok());
  CHECK(d->generation == get.generation);
  REQUIRE(d->results.size() == 1);
  CHECK(d->results[0].inline_bytes == "old");
}

TEST_CASE("channel service: a client scribbling over its region costs others nothing",
          "[channel]") {
  auto server = start_server();
  RawSession bad = open_raw(*server);
  auto good = connect(*server);
  std::atomic<bool> stop{false};
  std::thread scribbler([&] {
    std::mt19937_64 rng(7);
    auto* base = reinterpret_cast<uint64_t*>(bad.region.data());
    const size_t words = bad.region.size() / 8;
    // Bounded: at most 2M stores or until the well-behaved client is done.
    for (int i = 0; i < 2'000'000 && !stop.load(std::memory_order_relaxed); ++i) {
      base[rng() % words] = rng();
      if (i % 1024 == 0) bad.link->ring();
    }
  });
  for (int i = 0; i < 300; ++i) {
    const std::string key = "k" + std::to_string(i % 17);
    const std::string v = pattern(100 + i * 7, i);
    REQUIRE(good->put(key, v).is_ok());
    auto got = good->get_copy(key);
    REQUIRE(got.is_ok());
    REQUIRE(*got == v);
  }
  stop = true;
  scribbler.join();
  auto got = good->get_copy("k3");
  CHECK(got.is_ok());
}

TEST_CASE("channel service: a client that never reads its completions costs others nothing",
          "[channel]") {
  auto server = start_server();
  RawSession lazy = open_raw(*server);
  auto good = connect(*server);
  REQUIRE(good->put("x", pattern(500, 3)).is_ok());
  ch::Request get;
  get.op = ch::Op::kGet;
  get.key = "x";
  std::string w;
  for (int round = 0; round < 200; ++round) {
    for (uint32_t slot = 0; slot < kSlots; ++slot) {
      get.slot = slot;
      get.generation = ++lazy.gen;
      REQUIRE(ch::encode(get, kSlot, &w).is_ok());
      REQUIRE(lazy.link
                  ->post(slot, get.generation,
                         std::span(reinterpret_cast<const std::byte*>(w.data()), w.size()))
                  .is_ok());
    }
    lazy.link->ring();
    auto got = good->get_copy("x");
    REQUIRE(got.is_ok());
    REQUIRE(*got == pattern(500, 3));
  }
}

TEST_CASE("channel service: an idle server and client with the channel open use no CPU",
          "[channel]") {
  auto server = start_server();
  auto c = connect(*server);
  REQUIRE(c->put("k", "v").is_ok());
  REQUIRE(c->get_copy("k").is_ok());
  auto before = kvrdma::testing::thread_activity(kvrdma::server::ChannelService::kThreadName);
  // Not synchronisation: what is measured is a rate, so the test watches for a fixed time.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto after = kvrdma::testing::thread_activity(kvrdma::server::ChannelService::kThreadName);
  INFO("channel thread in 1 s idle: " << after.switches - before.switches << " wake-ups, "
                                      << after.ticks - before.ticks << " ticks");
  CHECK(after.switches - before.switches <= 5);  // its 1 s housekeeping timer, not a poll
  CHECK(after.ticks - before.ticks <= 2);        // clock ticks (10 ms each)
}

TEST_CASE("channel: get_async / put_async keep many requests in flight, byte for byte",
          "[channel]") {
  auto server = start_server();
  for (bool channel : {true, false}) {
    DYNAMIC_SECTION("channel " << channel) {
      ClientOptions o;
      o.server_addr = server->address();
      o.buffer_bytes = 4 << 20;
      o.timeout_ms = 20000;
      o.transport.channel = channel;
      auto c = Client::connect(o);
      REQUIRE(c.is_ok());
      Client& client = **c;
      std::vector<kvrdma::Pending> puts;
      for (int i = 0; i < 64; ++i) {
        // 64 in flight: more than the channel's slots, so submits also wait for free ones.
        puts.push_back(client.put_async("p" + std::to_string(i), pattern(50 + i * 150, i)));
      }
      for (auto& p : puts) REQUIRE(p.wait().is_ok());
      std::vector<kvrdma::Pending> gets;
      for (int i = 0; i < 64; ++i) gets.push_back(client.get_async("p" + std::to_string(i)));
      gets.push_back(client.get_async("absent"));
      for (int i = 0; i < 64; ++i) {
        auto v = gets[i].wait();
        REQUIRE(v.is_ok());
        CHECK(*v == pattern(50 + i * 150, i));
      }
      auto missing = gets.back().wait();
      CHECK(missing.status().code() == Code::kNotFound);
      CHECK(gets.back().wait().status().code() == Code::kFailedPrecondition);  // once only
      // A value above what a slot carries still arrives whole (the blocking path).
      const std::string big = pattern(100000, 9);
      REQUIRE(client.put_async("big", big).wait().is_ok());
      auto b = client.get_async("big").wait();
      REQUIRE(b.is_ok());
      CHECK(*b == big);
      // Dropped without wait: the slot's late answer is never taken for the next request.
      { auto dropped = client.get_async("p1"); }
      auto after = client.get_async("p2").wait();
      REQUIRE(after.is_ok());
      CHECK(*after == pattern(50 + 2 * 150, 2));
    }
  }
}
