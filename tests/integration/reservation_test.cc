// A PUT reservation that is never committed expires, and its pool memory comes back.
#include <catch2/catch.hpp>

#include <thread>

#include "integration/harness.h"
#include "integration/raw_rpc.h"
#include "integration/wait_stats.h"
#include "kvrdma/client.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using namespace kvrdma::testing;
namespace v1 = kvrdma::v1;

TEST_CASE("reservation: an uncommitted PutBegin expires and its memory returns", "[errors]") {
  ServerProcess server(
      {"--memory-mb", "64", "--reservation-ttl-ms", "300", "--sweep-interval-ms", "50"});
  ClientOptions o;
  o.server_addr = server.address();
  o.buffer_bytes = 4 << 20;
  auto connected = Client::connect(o);
  REQUIRE(connected.is_ok());
  Client& c = **connected;
  REQUIRE(c.put("keep", pattern(200000, 5)).is_ok());
  auto base = c.stats();
  REQUIRE(base.is_ok());
  REQUIRE(base->reservations == 0);

  RawRpc raw(server.address());
  v1::PutBeginRequest pb;
  pb.set_session_id(c.session_id());
  pb.set_key("never-committed");
  pb.set_value_len(4 << 20);
  v1::PutBeginReply pbr;
  auto begun = std::chrono::steady_clock::now();
  REQUIRE(raw.call(&v1::KvCache::Stub::PutBegin, pb, &pbr).ok());
  CHECK(pbr.expires_in_ms() <= 300);
  auto held = c.stats();
  REQUIRE(held.is_ok());
  // Only a stats call that surely came within the reservation's 300 ms must still see it.
  if (std::chrono::steady_clock::now() - begun < std::chrono::milliseconds(250)) {
    CHECK(held->reservations == 1);
    CHECK(held->pool_used_bytes >= base->pool_used_bytes + (4 << 20));
  }
  // Only the sweeper frees a reservation: wait for the server's state to change until it did.
  auto freed = [&](const kvrdma::ServerStats& st) {
    return st.reservations == 0 && st.pool_used_bytes == base->pool_used_bytes;
  };
  kvrdma::Result<kvrdma::ServerStats> s = wait_stats(c, freed, std::chrono::seconds(10));
  REQUIRE(s.is_ok());
  CHECK(s->reservations == 0);
  CHECK(s->reservations_expired == 1);
  CHECK(s->pool_used_bytes == base->pool_used_bytes);
  CHECK(std::chrono::steady_clock::now() - begun >= std::chrono::milliseconds(300));

  // Committing it now is refused, and nothing was published.
  v1::PutCommitRequest commit;
  commit.set_session_id(c.session_id());
  commit.set_reservation_id(pbr.reservation_id());
  v1::PutCommitReply cr;
  CHECK(raw.call(&v1::KvCache::Stub::PutCommit, commit, &cr).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(c.get("never-committed").status().code() == Code::kNotFound);
  CHECK(c.get_copy("keep").value() == pattern(200000, 5));
  CHECK(server.stop() == 0);
}
