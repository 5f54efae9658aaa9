// KvService in cluster mode (docs/cluster.md "Serving by the map"): a real ServerCore + KvService
// on a loopback gRPC port (the fuzz harness's InProcessService), maps installed by hand, and
// real RPCs through the generated stub. Refusals are checked by their typed detail.
#include <grpcpp/grpcpp.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fuzz/service_harness.h"
#include "kv_cache.grpc.pb.h"
#include "rpc/status_map.h"

namespace v1 = kvrdma::v1;
using kvrdma::Code;
using kvrdma::cluster::kNoNode;
using kvrdma::cluster::kSlots;
using kvrdma::cluster::slot_of;
using kvrdma::server::ClusterView;

namespace {

// Keys by role; their slots get the role in the map (node 1 is the node under test).
const std::string kOwned = "owned", kOther = "other", kMoving = "moving", kImporting = "importing";
constexpr const char* kAddr2 = "10.0.0.2:5005";

std::shared_ptr<const kvrdma::cluster::SlotMap> test_map(uint64_t epoch, const std::string& self) {
  REQUIRE(
      std::set<uint32_t>{slot_of(kOwned), slot_of(kOther), slot_of(kMoving), slot_of(kImporting)}
          .size() == 4);  // one slot per role
  auto m = std::make_shared<kvrdma::cluster::SlotMap>();
  m->cluster = "test";
  m->epoch = epoch;
  m->controller = 1;
  m->nodes = {{1, self, "active", "mock"},
              {2, kAddr2, "active", "mock"},
              {3, "10.0.0.3:5005", "active", "mock"}};
  m->owner.assign(kSlots, 1);
  m->next_owner.assign(kSlots, kNoNode);
  m->owner[slot_of(kOther)] = 2;
  m->next_owner[slot_of(kMoving)] = 2;
  m->owner[slot_of(kImporting)] = 2;
  m->next_owner[slot_of(kImporting)] = 1;
  return m;
}

// One node under test, and a client of it (mock transport, 1 MiB receive regions).
class Node {
 public:
  explicit Node(bool cluster) : svc_(true, {}, /*listen=*/true) {
    auto& core = svc_.core();
    core.public_address = svc_.address();
    if (cluster) {
      core.options.node_id = 1;
      core.options.cluster = "test";
      core.cluster = std::make_unique<ClusterView>(1, true);  // before any request
    }
    stub_ = v1::KvCache::NewStub(
        grpc::CreateChannel(svc_.address(), grpc::InsecureChannelCredentials()));
    auto t = kvrdma::transport::make_transport(kvrdma::TransportOptions{});
    REQUIRE(t.is_ok());
    client_ = std::move(*t);
  }

  kvrdma::server::ServerCore& core() { return svc_.core(); }
  v1::KvCache::Stub& stub() { return *stub_; }
  void install(uint64_t epoch) { REQUIRE(core().cluster->set_map(test_map(epoch, address()))); }
  std::string address() const { return svc_.address(); }

  // A new session; `peer_node` as in HelloRequest (node id + 1, 0: a client).
  kvrdma::Status hello(uint64_t* session, uint32_t peer_node = 0) {
    auto region = client_->allocate(1 << 20);
    REQUIRE(region.is_ok());
    v1::HelloRequest req;
    req.set_transport_kind(client_->kind());
    req.set_transport_address(client_->address());
    req.set_memory_descriptor((*region)->descriptor());
    req.set_region_size((*region)->size());
    req.set_peer_node(peer_node);
    v1::HelloReply reply;
    grpc::ClientContext ctx;
    kvrdma::Status s = kvrdma::rpc::from_grpc(stub_->Hello(&ctx, req, &reply));
    (*region)->seal();
    regions_.push_back(std::move(*region));
    *session = reply.session_id();
    return s;
  }
  uint64_t session(uint32_t peer_node = 0) {
    uint64_t id = 0;
    kvrdma::Status s = hello(&id, peer_node);
    INFO(s.to_string());
    REQUIRE(s.is_ok());
    return id;
  }

 private:
  kvrdma::fuzz::InProcessService svc_;
  std::unique_ptr<v1::KvCache::Stub> stub_;
  std::unique_ptr<kvrdma::transport::Transport> client_;
  std::vector<std::unique_ptr<kvrdma::transport::LocalRegion>> regions_;
};

// Calls `method` of the stub with a 10 s deadline; the outcome as a kvrdma::Status.
template <typename Method, typename Req, typename Reply>
kvrdma::Status call(Node& n, Method method, const Req& req, Reply* reply) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return kvrdma::rpc::from_grpc((n.stub().*method)(&ctx, req, reply));
}

kvrdma::Status put(Node& n, uint64_t session, const std::string& key, const std::string& value) {
  v1::PutRequest req;
  req.set_session_id(session);
  req.set_key(key);
  req.set_value(value);
  v1::PutReply reply;
  return call(n, &v1::KvCache::Stub::Put, req, &reply);
}

kvrdma::Status get(Node& n, uint64_t session, const std::string& key, std::string* value) {
  v1::GetRequest req;
  req.set_session_id(session);
  req.set_key(key);
  v1::GetReply reply;
  kvrdma::Status s = call(n, &v1::KvCache::Stub::Get, req, &reply);
  if (s.is_ok()) *value = reply.value();
  return s;
}

kvrdma::Status del(Node& n, uint64_t session, const std::string& key, bool* existed = nullptr) {
  v1::DeleteRequest req;
  req.set_session_id(session);
  req.set_key(key);
  v1::DeleteReply reply;
  kvrdma::Status s = call(n, &v1::KvCache::Stub::Delete, req, &reply);
  if (existed) *existed = reply.existed();
  return s;
}

kvrdma::Status put_begin(Node& n, uint64_t session, const std::string& key, uint64_t len,
                         v1::PutBeginReply* reply) {
  v1::PutBeginRequest req;
  req.set_session_id(session);
  req.set_key(key);
  req.set_value_len(len);
  return call(n, &v1::KvCache::Stub::PutBegin, req, reply);
}

kvrdma::Status put_commit(Node& n, uint64_t session, uint64_t reservation) {
  v1::PutCommitRequest req;
  req.set_session_id(session);
  req.set_reservation_id(reservation);
  v1::PutCommitReply reply;
  return call(n, &v1::KvCache::Stub::PutCommit, req, &reply);
}

// A refusal: FAILED_PRECONDITION whose typed detail names `owner` (by id and address).
void check_refused(const kvrdma::Status& s, uint32_t owner, const std::string& address,
                   uint64_t epoch, bool moved, const std::string& key) {
  INFO(s.to_string());
  CHECK(s.code() == Code::kFailedPrecondition);
  auto w = kvrdma::rpc::wrong_owner_of(s);
  REQUIRE(w.has_value());
  CHECK(w->slot() == slot_of(key));
  CHECK(w->owner_id() == owner);
  CHECK(w->owner_address() == address);
  CHECK(w->epoch() == epoch);
  CHECK(w->moved() == moved);
}

void mark_handed_off(Node& n, const std::string& key) {
  const uint32_t slots[] = {slot_of(key)};
  std::unique_lock gate(n.core().cluster->write_gate());
  n.core().cluster->mark_handed_off(slots);
}

}  // namespace

TEST_CASE("cluster service: the owner serves, a non-owner refuses naming the owner",
          "[cluster_service]") {
  Node n(true);
  n.install(5);
  uint64_t s = n.session();
  std::string v;
  REQUIRE(put(n, s, kOwned, "value-1").is_ok());
  REQUIRE(get(n, s, kOwned, &v).is_ok());
  CHECK(v == "value-1");
  bool existed = false;
  CHECK(del(n, s, kOwned, &existed).is_ok());
  CHECK(existed);
  CHECK(get(n, s, kOwned, &v).code() == Code::kNotFound);  // served: a plain miss

  check_refused(put(n, s, kOther, "x"), 2, kAddr2, 5, false, kOther);
  check_refused(get(n, s, kOther, &v), 2, kAddr2, 5, false, kOther);
  check_refused(del(n, s, kOther), 2, kAddr2, 5, false, kOther);
  v1::PutBeginReply begun;
  check_refused(put_begin(n, s, kOther, 100, &begun), 2, kAddr2, 5, false, kOther);
  CHECK(n.core().store->stats().keys == 0);
  CHECK(n.core().sessions->reservations() == 0);
  // A newer map moves the key here: served at once.
  REQUIRE(n.core().cluster->set_map([&] {
    auto m = std::make_shared<kvrdma::cluster::SlotMap>(*test_map(6, n.address()));
    m->owner[slot_of(kOther)] = 1;
    return m;
  }()));
  CHECK(put(n, s, kOther, "mine now").is_ok());
}

TEST_CASE(
    "cluster service: a slot moving out serves what it has, redirects misses, forwards "
    "deletes",
    "[cluster_service]") {
  Node n(true);
  n.install(5);
  uint64_t s = n.session();
  std::string v;
  REQUIRE(put(n, s, kMoving, "still here").is_ok());
  REQUIRE(get(n, s, kMoving, &v).is_ok());
  CHECK(v == "still here");
  check_refused(get(n, s, kMoving + "{" + kMoving + "}", &v), 2, kAddr2, 5, true, kMoving);

  struct Forwarded {
    std::string key;
    v1::WrongOwner to;
    bool deadline_ahead = false;
  };
  std::vector<Forwarded> forwarded;
  kvrdma::Status answer;  // what the next owner says
  n.core().forward_delete = [&](std::string_view key, const v1::WrongOwner& to,
                                std::chrono::steady_clock::time_point deadline) {
    forwarded.push_back({std::string(key), to, deadline > std::chrono::steady_clock::now()});
    return answer;
  };
  bool existed = false;
  answer = kvrdma::Status(Code::kNotFound, "not there");
  REQUIRE(del(n, s, kMoving, &existed).is_ok());  // erased here, absent there
  CHECK(existed);
  CHECK(get(n, s, kMoving, &v).code() == Code::kFailedPrecondition);  // gone here: redirect
  REQUIRE(forwarded.size() == 1);
  CHECK(forwarded[0].key == kMoving);
  CHECK(forwarded[0].to.owner_id() == 2);
  CHECK(forwarded[0].to.owner_address() == kAddr2);
  CHECK(forwarded[0].to.moved());
  CHECK(forwarded[0].deadline_ahead);

  answer = kvrdma::Status();  // only the next owner had it
  CHECK(del(n, s, kMoving, &existed).is_ok());
  CHECK(existed);
  answer = kvrdma::Status(Code::kNotFound, "not there");
  CHECK(del(n, s, kMoving, &existed).code() == Code::kNotFound);
  CHECK_FALSE(existed);
  answer = kvrdma::Status(Code::kUnavailable, "node 2 is unreachable");
  kvrdma::Status failed = del(n, s, kMoving);
  CHECK(failed.code() == Code::kUnavailable);
  CHECK_THAT(failed.message(), Catch::Contains("node 2 is unreachable"));
  CHECK(forwarded.size() == 4);
  CHECK(del(n, s, kOwned, &existed).code() == Code::kNotFound);  // not moving: not forwarded
  CHECK(forwarded.size() == 4);
}

TEST_CASE("cluster service: a handed-off slot redirects everything", "[cluster_service]") {
  Node n(true);
  n.install(5);
  uint64_t s = n.session();
  REQUIRE(put(n, s, kMoving, "left behind").is_ok());
  mark_handed_off(n, kMoving);
  std::string v;
  check_refused(get(n, s, kMoving, &v), 2, kAddr2, 5, true, kMoving);
  check_refused(put(n, s, kMoving, "y"), 2, kAddr2, 5, true, kMoving);
  check_refused(del(n, s, kMoving), 2, kAddr2, 5, true, kMoving);
  v1::PutBeginReply begun;
  check_refused(put_begin(n, s, kMoving, 100, &begun), 2, kAddr2, 5, true, kMoving);
  CHECK(n.core().store->stats().keys == 1);  // neither overwritten nor deleted
}

TEST_CASE("cluster service: a PutCommit after the hand-off is refused and frees the reservation",
          "[cluster_service]") {
  Node n(true);
  n.install(5);
  uint64_t s = n.session();
  const uint64_t used = n.core().pool->usage().used;
  v1::PutBeginReply begun;
  REQUIRE(put_begin(n, s, kMoving, 100000, &begun).is_ok());
  CHECK(n.core().sessions->reservations() == 1);
  mark_handed_off(n, kMoving);
  check_refused(put_commit(n, s, begun.reservation_id()), 2, kAddr2, 5, true, kMoving);
  CHECK(n.core().sessions->reservations() == 0);
  CHECK(n.core().pool->usage().used == used);
  CHECK(put_commit(n, s, begun.reservation_id()).code() == Code::kNotFound);
  CHECK(n.core().store->stats().keys == 0);
}

TEST_CASE("cluster service: a write waits for the hand-off in progress, then is refused",
          "[cluster_service]") {
  Node n(true);
  n.install(5);
  uint64_t s = n.session();
  std::unique_lock gate(n.core().cluster->write_gate());  // the mover, handing off
  auto pending = std::async(std::launch::async, [&] { return put(n, s, kMoving, "late"); });
  // The PUT cannot get past its check while the mover holds the gate.
  CHECK(pending.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);
  const uint32_t slots[] = {slot_of(kMoving)};
  n.core().cluster->mark_handed_off(slots);
  gate.unlock();
  check_refused(pending.get(), 2, kAddr2, 5, true, kMoving);
  CHECK(n.core().store->stats().keys == 0);
}

TEST_CASE("cluster service: GetMany, PutMany and GetStream carry a detail per item",
          "[cluster_service]") {
  Node n(true);
  n.install(5);
  uint64_t s = n.session();
  v1::PutManyRequest pm;
  pm.set_session_id(s);
  for (const auto& k : {kOwned, kOther, kImporting, kMoving}) {
    auto* item = pm.add_items();
    item->set_key(k);
    item->set_value("v-" + k);
  }
  v1::PutManyReply pr;
  REQUIRE(call(n, &v1::KvCache::Stub::PutMany, pm, &pr).is_ok());
  REQUIRE(pr.results_size() == 4);
  CHECK(pr.results(0).code() == 0);
  check_refused(kvrdma::rpc::from_item(pr.results(1)), 2, kAddr2, 5, false, kOther);
  CHECK(pr.results(2).code() == 0);
  CHECK(pr.results(3).code() == 0);
  CHECK(n.core().store->stats().keys == 3);

  REQUIRE(del(n, s, kMoving).is_ok());
  v1::GetManyRequest gm;
  gm.set_session_id(s);
  for (const auto& k : {kOwned, kOther, kMoving, kImporting, std::string("absent")}) {
    gm.add_items()->set_key(k);
  }
  v1::GetManyReply gr;
  REQUIRE(call(n, &v1::KvCache::Stub::GetMany, gm, &gr).is_ok());
  REQUIRE(gr.results_size() == 5);
  CHECK(gr.results(0).status().code() == 0);
  CHECK(gr.results(0).value() == "v-owned");
  check_refused(kvrdma::rpc::from_item(gr.results(1).status()), 2, kAddr2, 5, false, kOther);
  check_refused(kvrdma::rpc::from_item(gr.results(2).status()), 2, kAddr2, 5, true, kMoving);
  CHECK(gr.results(3).value() == "v-importing");
  CHECK(kvrdma::rpc::from_item(gr.results(4).status()).code() == Code::kNotFound);

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = n.stub().GetStream(&ctx);
  v1::StreamGetRequest sr;
  sr.set_request_id(7);
  sr.mutable_get()->set_session_id(s);
  sr.mutable_get()->set_key(kOther);
  REQUIRE(stream->Write(sr));
  sr.set_request_id(8);
  *sr.mutable_get_many() = gm;
  REQUIRE(stream->Write(sr));
  REQUIRE(stream->WritesDone());
  v1::StreamGetReply reply;
  for (int i = 0; i < 2; ++i) {
    REQUIRE(stream->Read(&reply));
    if (reply.request_id() == 7) {
      check_refused(kvrdma::rpc::from_item(reply.status()), 2, kAddr2, 5, false, kOther);
    } else {
      REQUIRE(reply.request_id() == 8);
      REQUIRE(reply.get_many().results_size() == 5);
      check_refused(kvrdma::rpc::from_item(reply.get_many().results(2).status()), 2, kAddr2, 5,
                    true, kMoving);
    }
  }
  CHECK(stream->Finish().ok());
}

TEST_CASE("cluster service: a peer session writes into an importing slot and is counted",
          "[cluster_service]") {
  Node n(true);
  n.install(5);
  uint64_t peer = n.session(/*peer_node=*/2 + 1);
  uint64_t client = n.session();
  REQUIRE(put(n, peer, kImporting, "moved in").is_ok());
  v1::PutBeginReply begun;
  const std::string big(100000, 'b');
  REQUIRE(put_begin(n, peer, kImporting + "{" + kImporting + "}", big.size(), &begun).is_ok());
  std::memcpy(n.core().pool_region->data() + begun.remote_offset(), big.data(), big.size());
  REQUIRE(put_commit(n, peer, begun.reservation_id()).is_ok());
  check_refused(put(n, peer, kOther, "x"), 2, kAddr2, 5, false, kOther);
  REQUIRE(put(n, client, kImporting, "a client's").is_ok());  // redirected clients too

  n.core().counters.keys_moved_out = 3;  // the mover (cluster_node) counts there
  v1::StatsReply st;
  REQUIRE(call(n, &v1::KvCache::Stub::Stats, v1::StatsRequest(), &st).is_ok());
  CHECK(st.keys_moved_in() == 2);
  CHECK(st.puts() == 1);
  CHECK(st.cluster() == "test");
  CHECK(st.map_epoch() == 5);
  CHECK(st.slots() == kSlots - 2);  // all but kOther's and kImporting's
  CHECK(st.keys_moved_out() == 3);
  std::string v;
  REQUIRE(get(n, client, kImporting, &v).is_ok());
  CHECK(v == "a client's");
}

TEST_CASE("cluster service: ClusterMap and Locate", "[cluster_service]") {
  Node n(true);
  uint64_t s = n.session();
  v1::ClusterMapReply mr;
  CHECK(call(n, &v1::KvCache::Stub::ClusterMap, v1::ClusterMapRequest(), &mr).code() ==
        Code::kUnavailable);  // no map yet
  n.install(5);
  REQUIRE(call(n, &v1::KvCache::Stub::ClusterMap, v1::ClusterMapRequest(), &mr).is_ok());
  v1::ClusterMap want;
  kvrdma::cluster::to_proto(*test_map(5, n.address()), &want);
  CHECK(mr.map().SerializeAsString() == want.SerializeAsString());

  const std::string value(3000, 'L');
  REQUIRE(put(n, s, kOwned, value).is_ok());
  v1::LocateRequest lr;
  lr.set_key(kOwned);
  v1::LocateReply loc;
  REQUIRE(call(n, &v1::KvCache::Stub::Locate, lr, &loc).is_ok());
  const v1::ValueLocation& l = loc.location();
  CHECK(l.node_id() == 1);
  CHECK(l.node_address() == n.address());
  CHECK(l.region_descriptor() == n.core().pool_region->descriptor());
  CHECK(l.length() == value.size());
  REQUIRE(l.offset() + l.length() <= n.core().pool_region->size());
  CHECK(std::string(reinterpret_cast<const char*>(n.core().pool_region->data()) + l.offset(),
                    l.length()) == value);
  CHECK(l.epoch() == 5);
  CHECK(l.slot() == slot_of(kOwned));
  CHECK(n.core().store->stats().pinned == 0);  // the pin ended with the call

  lr.set_key("absent");
  CHECK(call(n, &v1::KvCache::Stub::Locate, lr, &loc).code() == Code::kNotFound);
  lr.set_key(kOther);
  check_refused(call(n, &v1::KvCache::Stub::Locate, lr, &loc), 2, kAddr2, 5, false, kOther);
  lr.set_key(kMoving);
  check_refused(call(n, &v1::KvCache::Stub::Locate, lr, &loc), 2, kAddr2, 5, true, kMoving);
}

TEST_CASE("cluster service: a node that lost its lease answers data requests UNAVAILABLE",
          "[cluster_service]") {
  Node n(true);
  n.install(5);
  uint64_t s = n.session();
  REQUIRE(put(n, s, kOwned, "before").is_ok());
  n.core().cluster->set_serving(false);
  std::string v;
  v1::PutBeginReply begun;
  v1::GetManyRequest gm;
  gm.set_session_id(s);
  gm.add_items()->set_key(kOwned);
  v1::GetManyReply gr;
  v1::PutManyRequest pm;
  pm.set_session_id(s);
  v1::PutManyReply pr;
  v1::LocateRequest lr;
  lr.set_key(kOwned);
  v1::LocateReply loc;
  v1::ClusterMapReply mr;
  for (const kvrdma::Status& st :
       {get(n, s, kOwned, &v), put(n, s, kOwned, "after"), del(n, s, kOwned),
        put_begin(n, s, kOwned, 100, &begun), call(n, &v1::KvCache::Stub::GetMany, gm, &gr),
        call(n, &v1::KvCache::Stub::PutMany, pm, &pr),
        call(n, &v1::KvCache::Stub::Locate, lr, &loc),
        call(n, &v1::KvCache::Stub::ClusterMap, v1::ClusterMapRequest(), &mr)}) {
    INFO(st.to_string());
    CHECK(st.code() == Code::kUnavailable);
    CHECK_THAT(st.message(), Catch::Contains("node 1 lost its cluster lease"));
  }
  v1::StatsReply stats;
  CHECK(call(n, &v1::KvCache::Stub::Stats, v1::StatsRequest(), &stats).is_ok());
  CHECK(stats.keys() == 1);  // nothing changed
}

TEST_CASE("cluster service: outside cluster mode every key is served as before",
          "[cluster_service]") {
  Node n(false);
  uint64_t s = n.session();
  std::string v;
  for (const auto& k : {kOwned, kOther, kMoving, kImporting}) {
    REQUIRE(put(n, s, k, "single " + k).is_ok());
    REQUIRE(get(n, s, k, &v).is_ok());
    CHECK(v == "single " + k);
  }
  CHECK(del(n, s, kOther).is_ok());
  v1::ClusterMapReply mr;
  REQUIRE(call(n, &v1::KvCache::Stub::ClusterMap, v1::ClusterMapRequest(), &mr).is_ok());
  CHECK(mr.map().epoch() == 0);
  CHECK(mr.map().owner_size() == 0);
  REQUIRE(mr.map().nodes_size() == 1);
  CHECK(mr.map().nodes(0).node_id() == 0);
  CHECK(mr.map().nodes(0).address() == n.address());
  CHECK(mr.map().nodes(0).state() == "active");
  CHECK(mr.map().nodes(0).transport_kind() == "mock");
  v1::LocateRequest lr;
  lr.set_key(kMoving);
  v1::LocateReply loc;
  REQUIRE(call(n, &v1::KvCache::Stub::Locate, lr, &loc).is_ok());
  CHECK(loc.location().epoch() == 0);
  CHECK(loc.location().length() == ("single " + kMoving).size());
  v1::StatsReply st;
  REQUIRE(call(n, &v1::KvCache::Stub::Stats, v1::StatsRequest(), &st).is_ok());
  CHECK(st.cluster().empty());
  CHECK(st.map_epoch() == 0);
  CHECK(st.slots() == 0);
  uint64_t peer = 0;
  CHECK(n.hello(&peer, 2).code() == Code::kFailedPrecondition);  // no peers outside a cluster
}
