// Hostile and malformed requests sent straight through the gRPC stub: each gets its code and a
// message, nothing is written outside the client's region, and stored values stay intact.
#include <catch2/catch.hpp>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include "integration/harness.h"
#include "kv_cache.grpc.pb.h"
#include "kvrdma/client.h"
#include "transport/transport.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using namespace kvrdma::testing;
namespace v1 = kvrdma::v1;

namespace {

struct Raw {
  explicit Raw(const std::string& addr)
      : stub(v1::KvCache::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()))) {}
  template <typename Req, typename Rep, typename Fn>
  grpc::Status call(Fn fn, const Req& req, Rep* rep) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ((*stub).*fn)(&ctx, req, rep);
  }
  std::unique_ptr<v1::KvCache::Stub> stub;
};

std::unique_ptr<Client> connect(const ServerProcess& server) {
  ClientOptions o;
  o.server_addr = server.address();
  o.buffer_bytes = 8 << 20;
  auto c = Client::connect(o);
  REQUIRE(c.is_ok());
  return std::move(c).value();
}

}  // namespace

TEST_CASE("errors: bad requests get their code and leave stored values intact", "[errors]") {
  ServerProcess server({"--memory-mb", "64", "--max-value-mb", "1"});
  auto c = connect(server);
  std::string big = pattern(300000, 1);
  REQUIRE(c->put("keep-small", "value").is_ok());
  REQUIRE(c->put("keep-big", big).is_ok());
  Raw raw(server.address());

  SECTION("empty key, key over 4 KiB, value over the maximum") {
    CHECK(c->put("", "v").code() == Code::kInvalidArgument);
    CHECK(c->get(std::string(4097, 'k')).status().code() == Code::kInvalidArgument);
    auto s = c->put("too-big", pattern(2 << 20, 3));
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK_FALSE(s.message().empty());
    v1::PutBeginRequest pb;
    pb.set_session_id(c->session_id());
    pb.set_key("too-big");
    pb.set_value_len(UINT64_MAX);
    v1::PutBeginReply pbr;
    CHECK(raw.call(&v1::KvCache::Stub::PutBegin, pb, &pbr).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("unknown session") {
    v1::GetRequest g;
    g.set_session_id(12345);
    g.set_key("keep-small");
    v1::GetReply r;
    auto s = raw.call(&v1::KvCache::Stub::Get, g, &r);
    CHECK(s.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK(s.error_message().find("session") != std::string::npos);
  }
  SECTION("a destination outside the registered region") {
    for (uint64_t off : {uint64_t{8} << 20, (uint64_t{8} << 20) - 4096, UINT64_MAX - 10}) {
      v1::GetRequest g;
      g.set_session_id(c->session_id());
      g.set_key("keep-big");
      g.set_dest_offset(off);
      g.set_dest_capacity(big.size());
      v1::GetReply r;
      CHECK(raw.call(&v1::KvCache::Stub::Get, g, &r).error_code() ==
            grpc::StatusCode::INVALID_ARGUMENT);
    }
  }
  SECTION("Hello naming memory the server must not map") {
    auto t = kvrdma::transport::make_transport({});
    REQUIRE(t.is_ok());
    for (const char* d : {"kvrdma-mock-v1 /etc/passwd 4096", "kvrdma-mock-v1 /kvrdma-1-0123456789abcdef 4096",
                          "nonsense", ""}) {
      v1::HelloRequest h;
      h.set_transport_kind("mock");
      h.set_transport_address((*t)->address());
      h.set_memory_descriptor(d);
      h.set_region_size(4096);
      v1::HelloReply r;
      auto s = raw.call(&v1::KvCache::Stub::Hello, h, &r);
      INFO(d << " -> " << s.error_message());
      CHECK_FALSE(s.ok());
      CHECK((s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
             s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
             s.error_code() == grpc::StatusCode::INVALID_ARGUMENT));
    }
    v1::HelloRequest h;
    h.set_transport_kind("fabric/tcp;ofi_rxm");
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
  CHECK(c->get_copy("keep-small").value() == "value");
  CHECK(c->get_copy("keep-big").value() == big);
  CHECK(c->stats()->reservations == 0);
}

TEST_CASE("errors: an uncommitted reservation expires and its memory returns", "[errors]") {
  ServerProcess server({"--memory-mb", "64", "--reservation-ttl-ms", "1500", "--sweep-interval-ms", "50"});
  auto c = connect(server);
  uint64_t baseline = c->stats()->pool_used_bytes;
  Raw raw(server.address());
  v1::PutBeginRequest pb;
  pb.set_session_id(c->session_id());
  pb.set_key("never-committed");
  pb.set_value_len(4 << 20);
  v1::PutBeginReply pbr;
  REQUIRE(raw.call(&v1::KvCache::Stub::PutBegin, pb, &pbr).ok());
  CHECK(c->stats()->reservations == 1);
  CHECK(c->stats()->pool_used_bytes >= baseline + (4 << 20));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  // Only the sweeper frees a reservation and it raises no event a client could wait on: poll the
  // counter, bounded by the deadline.
  while (std::chrono::steady_clock::now() < deadline && c->stats()->reservations != 0) usleep(20000);
  auto s = c->stats();
  CHECK(s->reservations == 0);
  CHECK(s->reservations_expired == 1);
  CHECK(s->pool_used_bytes == baseline);
  v1::PutCommitRequest commit;
  commit.set_session_id(c->session_id());
  commit.set_reservation_id(pbr.reservation_id());
  v1::PutCommitReply cr;
  CHECK(raw.call(&v1::KvCache::Stub::PutCommit, commit, &cr).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(c->get("never-committed").status().code() == Code::kNotFound);
}
