// Server limits: each one hit gives RESOURCE_EXHAUSTED with a message naming its flag, and
// leaves what was stored intact; another session or client is not affected.
#include <catch2/catch.hpp>

#include "integration/harness.h"
#include "integration/raw_rpc.h"
#include "kvrdma/client.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using namespace kvrdma::testing;
namespace v1 = kvrdma::v1;

namespace {

Client& keep(std::vector<std::unique_ptr<Client>>& clients,
             kvrdma::Result<std::unique_ptr<Client>> c) {
  INFO(c.status().to_string());
  REQUIRE(c.is_ok());
  clients.push_back(std::move(c).value());
  return *clients.back();
}

ClientOptions options_for(const ServerProcess& server) {
  ClientOptions o;
  o.server_addr = server.address();
  o.buffer_bytes = 4 << 20;
  return o;
}

}  // namespace

TEST_CASE("limits: --max-sessions refuses one client too many, and frees the slot on Goodbye",
          "[limits]") {
  ServerProcess server({"--max-sessions", "2"});
  std::vector<std::unique_ptr<Client>> clients;
  Client& first = keep(clients, Client::connect(options_for(server)));
  keep(clients, Client::connect(options_for(server)));
  REQUIRE(first.put("k", "kept").is_ok());
  auto third = Client::connect(options_for(server));
  REQUIRE_FALSE(third.is_ok());
  CHECK(third.status().code() == Code::kResourceExhausted);
  CHECK_THAT(third.status().message(),
             Catch::Contains("ServerOptions::max_sessions / max-sessions"));
  clients.pop_back();  // Goodbye
  keep(clients, Client::connect(options_for(server)));
  CHECK(first.get_copy("k").value() == "kept");
}

TEST_CASE("limits: --max-inflight bounds the open two-phase PUTs of a session", "[limits]") {
  ServerProcess server({"--max-inflight", "2", "--memory-mb", "64"});
  std::vector<std::unique_ptr<Client>> clients;
  Client& c = keep(clients, Client::connect(options_for(server)));
  Client& other = keep(clients, Client::connect(options_for(server)));
  RawRpc raw(server.address());
  auto begin = [&](Client& who, const std::string& key, v1::PutBeginReply* reply) {
    v1::PutBeginRequest req;
    req.set_session_id(who.session_id());
    req.set_key(key);
    req.set_value_len(1 << 20);
    return raw.call(&v1::KvCache::Stub::PutBegin, req, reply);
  };
  v1::PutBeginReply r1, r2, r3;
  REQUIRE(begin(c, "a", &r1).ok());
  REQUIRE(begin(c, "b", &r2).ok());
  grpc::Status over = begin(c, "c", &r3);
  CHECK(over.error_code() == grpc::RESOURCE_EXHAUSTED);
  CHECK_THAT(over.error_message(), Catch::Contains("--max-inflight"));
  // Another session has its own budget, and the client API still works for it.
  REQUIRE(begin(other, "d", &r3).ok());
  CHECK(other.put("big", pattern(2 << 20, 1)).is_ok());
  // Aborting one gives the slot back.
  v1::PutAbortRequest abort;
  abort.set_session_id(c.session_id());
  abort.set_reservation_id(r1.reservation_id());
  v1::PutAbortReply abort_reply;
  REQUIRE(raw.call(&v1::KvCache::Stub::PutAbort, abort, &abort_reply).ok());
  CHECK(begin(c, "c", &r3).ok());
}

TEST_CASE("limits: a session cannot commit or abort another session's reservation", "[limits]") {
  ServerProcess server({"--memory-mb", "64"});
  std::vector<std::unique_ptr<Client>> clients;
  Client& a = keep(clients, Client::connect(options_for(server)));
  Client& b = keep(clients, Client::connect(options_for(server)));
  RawRpc raw(server.address());
  v1::PutBeginRequest req;
  req.set_session_id(a.session_id());
  req.set_key("mine");
  req.set_value_len(1 << 20);
  v1::PutBeginReply reserved;
  REQUIRE(raw.call(&v1::KvCache::Stub::PutBegin, req, &reserved).ok());
  v1::PutCommitRequest commit;
  commit.set_session_id(b.session_id());
  commit.set_reservation_id(reserved.reservation_id());
  v1::PutCommitReply commit_reply;
  CHECK_FALSE(raw.call(&v1::KvCache::Stub::PutCommit, commit, &commit_reply).ok());
  v1::PutAbortRequest abort;
  abort.set_session_id(b.session_id());
  abort.set_reservation_id(reserved.reservation_id());
  v1::PutAbortReply abort_reply;
  CHECK_FALSE(raw.call(&v1::KvCache::Stub::PutAbort, abort, &abort_reply).ok());
  // Still A's: A commits it, and the key appears.
  commit.set_session_id(a.session_id());
  REQUIRE(raw.call(&v1::KvCache::Stub::PutCommit, commit, &commit_reply).ok());
  CHECK(b.get("mine").is_ok());
}

TEST_CASE("limits: --max-message-mb refuses an oversized inline PUT and keeps the old value",
          "[limits]") {
  ServerProcess server({"--inline-threshold", "8M", "--max-message-mb", "1"});
  std::vector<std::unique_ptr<Client>> clients;
  Client& c = keep(clients, Client::connect(options_for(server)));
  REQUIRE(c.put("k", "small").is_ok());
  kvrdma::Status s = c.put("k", pattern(2 << 20, 9));
  CHECK(s.code() == Code::kResourceExhausted);
  CHECK_THAT(s.message(), Catch::Contains("ServerOptions::max_message_bytes / max-message-mb"));
  CHECK(c.get_copy("k").value() == "small");
}
