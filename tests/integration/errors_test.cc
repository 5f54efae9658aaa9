// Hostile and malformed requests against a live kv-server, through the C++ Client, the CLI and
// straight through the gRPC stub: each gets its code and a message naming the problem, nothing is
// written outside the client's region, and values stored before stay intact.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>

#include "integration/harness.h"
#include "integration/raw_rpc.h"
#include "integration/test_client.h"
#include "kvrdma/client.h"
#include "transport/transport.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using namespace kvrdma::testing;
namespace v1 = kvrdma::v1;

namespace {

std::unique_ptr<Client> connect(const ServerProcess& server) {
  ClientOptions o;
  o.server_addr = server.address();
  o.buffer_bytes = 8 << 20;
  return connect_client(o);
}

v1::HelloRequest hello(const std::string& address, const std::string& descriptor,
                       uint64_t region_size) {
  v1::HelloRequest h;
  h.set_client_id(77);
  h.set_transport_kind("mock");
  h.set_transport_address(address);
  h.set_memory_descriptor(descriptor);
  h.set_region_size(region_size);
  return h;
}

}  // namespace

TEST_CASE("errors: bad requests get their code and leave stored values intact",
          "[errors][mockonly]") {
  ServerProcess server({"--memory-mb", "64", "--max-value-mb", "1"});
  auto c = connect(server);
  std::string big = pattern(300000, 1);
  REQUIRE(c->put("keep-small", "value").is_ok());
  REQUIRE(c->put("keep-big", big).is_ok());
  auto raw_owner = std::make_unique<RawRpc>(server.address());
  RawRpc& raw = *raw_owner;

  SECTION("empty key, key over 4 KiB, value over --max-value-mb") {
    auto empty = c->put("", "v");
    CHECK(empty.code() == Code::kInvalidArgument);
    CHECK(empty.message().find("empty") != std::string::npos);
    CHECK(c->get("").status().code() == Code::kInvalidArgument);
    CHECK(c->put(std::string(4096, 'k'), "v").is_ok());  // the limit itself is allowed
    auto long_key = c->put(std::string(4097, 'k'), "v");
    CHECK(long_key.code() == Code::kInvalidArgument);
    CHECK(long_key.message().find("4097") != std::string::npos);
    CHECK(c->get(std::string(4097, 'k')).status().code() == Code::kInvalidArgument);
    auto s = c->put("too-big", pattern(2 << 20, 3));
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(s.message().find("max-value") != std::string::npos);
    v1::PutBeginRequest pb;
    pb.set_session_id(c->session_id());
    pb.set_key("too-big");
    pb.set_value_len(UINT64_MAX);
    v1::PutBeginReply pbr;
    CHECK(raw.call(&v1::KvCache::Stub::PutBegin, pb, &pbr).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("the same through kv-client: non-zero exit and a message naming the problem") {
    auto empty = run_client(server.address(), {"put", "", "v"});
    CHECK(empty.exit_code != 0);
    CHECK(empty.err.find("empty") != std::string::npos);
    auto long_key = run_client(server.address(), {"get", std::string(4097, 'k')});
    CHECK(long_key.exit_code == 3);
    CHECK(long_key.err.find("INVALID_ARGUMENT") != std::string::npos);
    auto file_temp = write_temp(pattern(2 << 20, 3));
    const std::string& file = file_temp->path;
    auto too_big = run_client(server.address(), {"put", "too-big", "--file", file});
    CHECK(too_big.exit_code == 3);
    CHECK(too_big.err.find("max-value") != std::string::npos);
  }
  SECTION("unknown session") {
    v1::GetRequest g;
    g.set_session_id(c->session_id() + 12345);
    g.set_key("keep-small");
    v1::GetReply r;
    auto s = raw.call(&v1::KvCache::Stub::Get, g, &r);
    CHECK(s.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK(s.error_message().find("session") != std::string::npos);
    v1::PutRequest p;
    p.set_session_id(c->session_id() + 12345);
    p.set_key("keep-small");
    p.set_value("overwritten");
    v1::PutReply pr;
    CHECK(raw.call(&v1::KvCache::Stub::Put, p, &pr).error_code() ==
          grpc::StatusCode::FAILED_PRECONDITION);
  }
  SECTION("a destination outside the client's region: INVALID_ARGUMENT, nothing written") {
    // A session of our own over a region we can inspect.
    auto t = kvrdma::transport::make_transport({});
    REQUIRE(t.is_ok());
    const size_t size = 1 << 20;
    auto region = (*t)->allocate(size);
    REQUIRE(region.is_ok());
    std::memset((*region)->data(), 0xAB, size);
    v1::HelloReply hr;
    auto hs = raw.call(&v1::KvCache::Stub::Hello,
                       hello((*t)->address(), (*region)->descriptor(), size), &hr);
    INFO(hs.error_message());
    REQUIRE(hs.ok());
    (*region)->seal();
    for (uint64_t off : {uint64_t{size}, uint64_t{size} - 4096, uint64_t{size} - big.size() + 1,
                         UINT64_MAX - 10, UINT64_MAX - big.size() + 1}) {
      v1::GetRequest g;
      g.set_session_id(hr.session_id());
      g.set_key("keep-big");
      g.set_dest_offset(off);
      g.set_dest_capacity(big.size());
      v1::GetReply r;
      INFO("dest_offset " << off);
      CHECK(raw.call(&v1::KvCache::Stub::Get, g, &r).error_code() ==
            grpc::StatusCode::INVALID_ARGUMENT);
    }
    const auto* bytes = reinterpret_cast<const unsigned char*>((*region)->data());
    CHECK(std::all_of(bytes, bytes + size, [](unsigned char b) { return b == 0xAB; }));
    // The same session with an offset inside the region does get the value pushed there.
    v1::GetRequest g;
    g.set_session_id(hr.session_id());
    g.set_key("keep-big");
    g.set_dest_offset(4096);
    g.set_dest_capacity(big.size());
    v1::GetReply r;
    REQUIRE(raw.call(&v1::KvCache::Stub::Get, g, &r).ok());
    CHECK(r.written());
    CHECK(std::string(reinterpret_cast<const char*>(bytes) + 4096, big.size()) == big);
    CHECK(bytes[4095] == 0xAB);
    CHECK(bytes[4096 + big.size()] == 0xAB);
  }
  SECTION("a region_size larger than the descriptor's object is refused") {
    auto t = kvrdma::transport::make_transport({});
    REQUIRE(t.is_ok());
    auto region = (*t)->allocate(1 << 20);
    REQUIRE(region.is_ok());
    v1::HelloReply hr;
    auto s = raw.call(&v1::KvCache::Stub::Hello,
                      hello((*t)->address(), (*region)->descriptor(), 64 << 20), &hr);
    CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(s.error_message().find("region_size") != std::string::npos);
  }
  SECTION("Hello naming memory the server must not map") {
    auto t = kvrdma::transport::make_transport({});
    REQUIRE(t.is_ok());
    struct Case {
      std::string descriptor;
      grpc::StatusCode code;
    };
    for (const Case& k :
         std::vector<Case>{{"kvrdma-mock-v1 /etc/passwd 4096", grpc::StatusCode::PERMISSION_DENIED},
                           {"kvrdma-mock-v1 /kvrdma-1-0123456789abcdef/../../etc/passwd 4096",
                            grpc::StatusCode::PERMISSION_DENIED},
                           {"kvrdma-mock-v1 /dev/shm/kvrdma-1-0123456789abcdef 4096",
                            grpc::StatusCode::PERMISSION_DENIED},
                           {"kvrdma-mock-v1 /kvrdma-1-0123456789abcdef 4096",
                            grpc::StatusCode::FAILED_PRECONDITION},  // well-formed, no such object
                           {"nonsense", grpc::StatusCode::INVALID_ARGUMENT},
                           {"", grpc::StatusCode::INVALID_ARGUMENT}}) {
      v1::HelloReply r;
      auto s = raw.call(&v1::KvCache::Stub::Hello, hello((*t)->address(), k.descriptor, 4096), &r);
      INFO(k.descriptor << " -> " << s.error_code() << " " << s.error_message());
      CHECK(s.error_code() == k.code);
      CHECK_FALSE(s.error_message().empty());
    }
  }
  SECTION("Hello over another transport kind") {
    v1::HelloRequest h;
    h.set_transport_kind("fabric/tcp");
    v1::HelloReply r;
    auto s = raw.call(&v1::KvCache::Stub::Hello, h, &r);
    CHECK(s.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK(s.error_message().find("transport") != std::string::npos);
  }
  SECTION("a reservation belongs to its own session only") {
    auto other = connect(server);
    v1::PutBeginRequest pb;
    pb.set_session_id(c->session_id());
    pb.set_key("reserved");
    pb.set_value_len(200000);
    v1::PutBeginReply pbr;
    REQUIRE(raw.call(&v1::KvCache::Stub::PutBegin, pb, &pbr).ok());
    v1::PutCommitRequest commit;
    commit.set_session_id(other->session_id());
    commit.set_reservation_id(pbr.reservation_id());
    v1::PutCommitReply cr;
    CHECK(raw.call(&v1::KvCache::Stub::PutCommit, commit, &cr).error_code() ==
          grpc::StatusCode::NOT_FOUND);
    v1::PutAbortRequest abort;
    abort.set_session_id(c->session_id());
    abort.set_reservation_id(pbr.reservation_id());
    v1::PutAbortReply ar;
    CHECK(raw.call(&v1::KvCache::Stub::PutAbort, abort, &ar).ok());
  }
  // Whatever the section did, the server still serves and the stored values are intact.
  CHECK(c->get_copy("keep-small").value() == "value");
  CHECK(c->get_copy("keep-big").value() == big);
  CHECK(c->stats()->reservations == 0);
  CHECK(run_client(server.address(), {"get", "keep-small"}).out == "value");
  // Disconnect first: kv-server takes its whole 2 s shutdown grace while a channel is open
  // (reservation_test covers stopping with a client still connected).
  c.reset();
  raw_owner.reset();
  CHECK(server.stop() == 0);
}
