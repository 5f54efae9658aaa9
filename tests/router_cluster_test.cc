// The client's router against fake cluster nodes: small in-process KvCache services that keep
// values in a map, serve by a slot map the test sets (refusing with a typed WrongOwner detail as
// docs/cluster.md says) and hand out a published map. Values stay inline, so no transport write
// is involved; the real servers' side is tested by the cluster integration suites.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster/slot_map.h"
#include "kv_cache.grpc.pb.h"
#include "kvrdma/client.h"
#include "rpc/status_map.h"
#include "transport/transport.h"

namespace {

using kvrdma::Code;
using kvrdma::Status;
using kvrdma::cluster::kSlots;
using kvrdma::cluster::SlotMap;
namespace v1 = kvrdma::v1;

// What every node hands out as the cluster map (the "etcd" of the fake).
struct Published {
  std::mutex mu;
  SlotMap map;  // guarded by mu
};

// One node. Thread-safe: gRPC's threads call it; the test changes its view under mu_.
class FakeNode final : public v1::KvCache::Service {
 public:
  FakeNode(uint32_t id, Published* published) : id_(id), published_(published) {
    auto t = kvrdma::transport::make_transport(kvrdma::TransportOptions{});
    REQUIRE(t);
    transport_ = std::move(*t);
    auto pool = transport_->allocate(1 << 20);
    REQUIRE(pool);
    pool_ = std::move(*pool);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(this);
    server_ = b.BuildAndStart();
    REQUIRE(server_);
  }
  ~FakeNode() override { stop(); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void stop() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    server_.reset();
  }
  // The map this node serves by; redirect: slots it answers `moved` for, to node `to`.
  void serve_by(const SlotMap& m) {
    std::lock_guard lock(mu_);
    view_ = m;
  }
  void redirect(uint32_t slot, uint32_t to, std::string to_address) {
    std::lock_guard lock(mu_);
    redirects_[slot] = {to, std::move(to_address)};
  }
  // A slot this node imports (next owner while it moves): served although the map says otherwise.
  void import(uint32_t slot) {
    std::lock_guard lock(mu_);
    imports_.push_back(slot);
  }
  // The next PutCommit is refused: the slot went to node `to` (not a redirect).
  void refuse_next_commit(uint32_t to, std::string to_address) {
    std::lock_guard lock(mu_);
    refuse_commit_ = {to, std::move(to_address)};
  }
  std::map<std::string, std::string> values() {
    std::lock_guard lock(mu_);
    return values_;
  }
  void set(const std::string& k, const std::string& v) {
    std::lock_guard lock(mu_);
    values_[k] = v;
  }
  uint64_t data_calls() {
    std::lock_guard lock(mu_);
    return data_calls_;
  }
  uint64_t max_epoch_seen() {
    std::lock_guard lock(mu_);
    return max_epoch_seen_;
  }

  grpc::Status Hello(grpc::ServerContext*, const v1::HelloRequest* req,
                     v1::HelloReply* reply) override {
    reply->set_session_id(1000 + id_);
    reply->set_node_id(id_);
    reply->set_transport_kind(req->transport_kind());
    reply->set_transport_address(transport_->address());
    reply->set_memory_descriptor(pool_->descriptor());
    reply->set_inline_threshold(1024);  // larger PUTs go two-phase; GETs always come inline
    reply->set_max_value_bytes(1 << 20);
    reply->set_lease_ms(30000);
    return grpc::Status::OK;
  }
  grpc::Status KeepAlive(grpc::ServerContext*, const v1::KeepAliveRequest*,
                         v1::KeepAliveReply*) override {
    return grpc::Status::OK;
  }
  grpc::Status Goodbye(grpc::ServerContext*, const v1::GoodbyeRequest*,
                       v1::GoodbyeReply*) override {
    return grpc::Status::OK;
  }
  grpc::Status ClusterMap(grpc::ServerContext*, const v1::ClusterMapRequest*,
                          v1::ClusterMapReply* reply) override {
    std::lock_guard lock(published_->mu);
    kvrdma::cluster::to_proto(published_->map, reply->mutable_map());
    return grpc::Status::OK;
  }
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* req, v1::GetReply* reply) override {
    std::lock_guard lock(mu_);
    if (Status s = check(req->key(), req->map_epoch()); !s.is_ok()) return kvrdma::rpc::to_grpc(s);
    auto it = values_.find(req->key());
    if (it == values_.end()) return kvrdma::rpc::to_grpc(Status(Code::kNotFound, "absent"));
    reply->set_is_inline(true);
    reply->set_value(it->second);
    reply->set_value_len(it->second.size());
    reply->set_node_id(id_);
    return grpc::Status::OK;
  }
  grpc::Status Put(grpc::ServerContext*, const v1::PutRequest* req, v1::PutReply*) override {
    std::lock_guard lock(mu_);
    if (Status s = check(req->key(), req->map_epoch()); !s.is_ok()) return kvrdma::rpc::to_grpc(s);
    values_[req->key()] = req->value();
    return grpc::Status::OK;
  }
  grpc::Status PutBegin(grpc::ServerContext*, const v1::PutBeginRequest* req,
                        v1::PutBeginReply* reply) override {
    std::lock_guard lock(mu_);
    if (Status s = check(req->key(), req->map_epoch()); !s.is_ok()) return kvrdma::rpc::to_grpc(s);
    if (req->value_len() > pool_->size()) {
      return kvrdma::rpc::to_grpc(Status(Code::kResourceExhausted, "too big for the fake"));
    }
    const uint64_t id = ++reservations_;
    pending_[id] = {req->key(), req->value_len()};
    reply->set_reservation_id(id);
    reply->set_remote_offset(0);  // one two-phase PUT at a time in these tests
    return grpc::Status::OK;
  }
  grpc::Status PutCommit(grpc::ServerContext*, const v1::PutCommitRequest* req,
                         v1::PutCommitReply*) override {
    std::lock_guard lock(mu_);
    auto it = pending_.find(req->reservation_id());
    if (it == pending_.end()) {
      return kvrdma::rpc::to_grpc(Status(Code::kNotFound, "no such reservation"));
    }
    auto [key, len] = it->second;
    pending_.erase(it);
    if (refuse_commit_) {
      v1::WrongOwner w;
      w.set_slot(kvrdma::cluster::slot_of(key));
      w.set_owner_id(refuse_commit_->first);
      w.set_owner_address(refuse_commit_->second);
      w.set_epoch(view_.epoch + 1);
      refuse_commit_.reset();
      return kvrdma::rpc::to_grpc(kvrdma::rpc::wrong_owner(w, "slot handed off before the commit"));
    }
    values_[key] = std::string(reinterpret_cast<const char*>(pool_->data()), len);
    return grpc::Status::OK;
  }
  grpc::Status PutAbort(grpc::ServerContext*, const v1::PutAbortRequest* req,
                        v1::PutAbortReply*) override {
    std::lock_guard lock(mu_);
    pending_.erase(req->reservation_id());
    return grpc::Status::OK;
  }
  grpc::Status Delete(grpc::ServerContext*, const v1::DeleteRequest* req,
                      v1::DeleteReply* reply) override {
    std::lock_guard lock(mu_);
    if (Status s = check(req->key(), req->map_epoch()); !s.is_ok()) return kvrdma::rpc::to_grpc(s);
    reply->set_existed(values_.erase(req->key()) > 0);
    if (!reply->existed()) return kvrdma::rpc::to_grpc(Status(Code::kNotFound, "absent"));
    return grpc::Status::OK;
  }
  grpc::Status GetMany(grpc::ServerContext*, const v1::GetManyRequest* req,
                       v1::GetManyReply* reply) override {
    std::lock_guard lock(mu_);
    for (const auto& item : req->items()) {
      v1::GetManyResult* r = reply->add_results();
      Status s = check(item.key(), req->map_epoch());
      auto it = values_.find(item.key());
      if (s.is_ok() && it == values_.end()) s = Status(Code::kNotFound, "absent");
      kvrdma::rpc::to_item(r->mutable_status(), s);
      if (!s.is_ok()) continue;
      r->set_is_inline(true);
      r->set_value(it->second);
      r->set_value_len(it->second.size());
    }
    reply->set_node_id(id_);
    return grpc::Status::OK;
  }
  grpc::Status PutMany(grpc::ServerContext*, const v1::PutManyRequest* req,
                       v1::PutManyReply* reply) override {
    std::lock_guard lock(mu_);
    for (const auto& item : req->items()) {
      Status s = check(item.key(), req->map_epoch());
      if (s.is_ok()) values_[item.key()] = item.value();
      kvrdma::rpc::to_item(reply->add_results(), s);
    }
    return grpc::Status::OK;
  }
  grpc::Status Stats(grpc::ServerContext*, const v1::StatsRequest*,
                     v1::StatsReply* reply) override {
    std::lock_guard lock(mu_);
    reply->set_node_id(id_);
    reply->set_keys(values_.size());
    reply->set_cluster("fake");
    reply->set_map_epoch(view_.epoch);
    reply->set_slots(view_.slots_of(id_));
    reply->set_pool_bytes(pool_->size());
    return grpc::Status::OK;
  }
  grpc::Status Locate(grpc::ServerContext*, const v1::LocateRequest* req,
                      v1::LocateReply* reply) override {
    std::lock_guard lock(mu_);
    if (Status s = check(req->key(), req->map_epoch()); !s.is_ok()) return kvrdma::rpc::to_grpc(s);
    auto it = values_.find(req->key());
    if (it == values_.end()) return kvrdma::rpc::to_grpc(Status(Code::kNotFound, "absent"));
    v1::ValueLocation* l = reply->mutable_location();
    l->set_node_id(id_);
    l->set_node_address(address());
    l->set_region_descriptor(pool_->descriptor());
    l->set_offset(4096);
    l->set_length(it->second.size());
    l->set_epoch(view_.epoch);
    l->set_slot(kvrdma::cluster::slot_of(req->key()));
    return grpc::Status::OK;
  }

 private:
  // Under mu_: OK when this node serves the key's slot, else the refusal docs/cluster.md gives.
  Status check(const std::string& key, uint64_t epoch) {
    ++data_calls_;
    max_epoch_seen_ = std::max(max_epoch_seen_, epoch);
    const uint32_t slot = kvrdma::cluster::slot_of(key);
    v1::WrongOwner w;
    w.set_slot(slot);
    w.set_epoch(view_.epoch);
    if (auto r = redirects_.find(slot); r != redirects_.end()) {
      w.set_owner_id(r->second.first);
      w.set_owner_address(r->second.second);
      w.set_moved(true);
      return kvrdma::rpc::wrong_owner(w, "slot moved");
    }
    const uint32_t owner = view_.owner_of(slot);
    if (owner == id_ || std::find(imports_.begin(), imports_.end(), slot) != imports_.end()) {
      return Status();
    }
    w.set_owner_id(owner);
    if (const auto* n = view_.node(owner)) w.set_owner_address(n->address);
    return kvrdma::rpc::wrong_owner(w, "wrong owner");
  }

  const uint32_t id_;
  Published* const published_;
  std::unique_ptr<kvrdma::transport::Transport> transport_;
  std::unique_ptr<kvrdma::transport::LocalRegion> pool_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mu_;
  SlotMap view_;                                                    // guarded by mu_
  std::map<uint32_t, std::pair<uint32_t, std::string>> redirects_;  // guarded by mu_
  std::vector<uint32_t> imports_;                                   // guarded by mu_
  std::optional<std::pair<uint32_t, std::string>> refuse_commit_;   // guarded by mu_
  uint64_t reservations_ = 0;                                       // guarded by mu_
  std::map<uint64_t, std::pair<std::string, uint64_t>> pending_;    // guarded by mu_
  std::map<std::string, std::string> values_;                       // guarded by mu_
  uint64_t data_calls_ = 0;                                         // guarded by mu_
  uint64_t max_epoch_seen_ = 0;                                     // guarded by mu_
};

// Three nodes (ids 1..3); the map gives node i the slots s with s % 3 == i - 1.
struct FakeCluster {
  Published published;
  std::vector<std::unique_ptr<FakeNode>> nodes;

  FakeCluster() {
    for (uint32_t id = 1; id <= 3; ++id) {
      nodes.push_back(std::make_unique<FakeNode>(id, &published));
    }
    publish(map(1, [](uint32_t s) { return s % 3 + 1; }));
  }
  template <class OwnerOf>
  SlotMap map(uint64_t epoch, OwnerOf owner_of) const {
    SlotMap m;
    m.cluster = "fake";
    m.epoch = epoch;
    m.controller = 1;
    for (uint32_t id = 1; id <= 3; ++id) {
      m.nodes.push_back({id, node(id).address(), "active", "mock"});
    }
    m.owner.resize(kSlots);
    for (uint32_t s = 0; s < kSlots; ++s) m.owner[s] = owner_of(s);
    return m;
  }
  // Every node serves by `m` and hands it out.
  void publish(const SlotMap& m) {
    {
      std::lock_guard lock(published.mu);
      published.map = m;
    }
    for (auto& n : nodes) n->serve_by(m);
  }
  FakeNode& node(uint32_t id) const { return *nodes[id - 1]; }
  std::string addresses() const {
    return node(1).address() + "," + node(2).address() + "," + node(3).address();
  }
  std::unique_ptr<kvrdma::Client> connect(const std::string& addresses) const {
    kvrdma::ClientOptions o;
    o.server_addr = addresses;
    o.buffer_bytes = 4 << 20;
    o.timeout_ms = 3000;
    auto c = kvrdma::Client::connect(o);
    INFO(c.status().message());
    REQUIRE(c);
    return std::move(*c);
  }
};

uint32_t owner_by_mod(const std::string& key) { return kvrdma::cluster::slot_of(key) % 3 + 1; }

std::vector<std::string> some_keys(size_t n) {
  std::vector<std::string> keys;
  for (size_t i = 0; i < n; ++i) keys.push_back("key-" + std::to_string(i));
  return keys;
}

// A TCP relay in front of a node that answers each new connection late: it accepts at once (the
// client's TCP connect succeeds) but forwards nothing for `delay`, as a node that is busy or
// descheduled when a client first dials it. Thread-safe; its threads end in the destructor.
class SlowRelay {
 public:
  SlowRelay(int target_port, std::chrono::milliseconds delay)
      : target_port_(target_port), delay_(delay) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listen_fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(listen_fd_, 16) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~SlowRelay() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    for (auto& t : relays_) t.join();
    ::close(listen_fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  void accept_loop() {
    for (;;) {
      int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0 || stopping_) {
        if (client >= 0) ::close(client);
        return;
      }
      relays_.emplace_back([this, client] { relay(client); });
    }
  }
  void relay(int client) {
    std::this_thread::sleep_for(delay_);
    int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (server >= 0 && ::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      char buf[1 << 14];
      while (!stopping_) {
        if (::poll(fds, 2, 50) < 0) break;
        bool closed = false;
        for (int i = 0; i < 2 && !closed; ++i) {
          if (fds[i].revents == 0) continue;
          ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
          closed = n <= 0 || ::write(fds[1 - i].fd, buf, static_cast<size_t>(n)) != n;
        }
        if (closed) break;
      }
    }
    if (server >= 0) ::close(server);
    ::close(client);
  }

  const int target_port_;
  const std::chrono::milliseconds delay_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::vector<std::thread> relays_;  // touched by acceptor_ only, joined after it
};

}  // namespace

TEST_CASE("router cluster: keys go to their owners, batches come back in input order") {
  FakeCluster fc;
  auto c = fc.connect(fc.addresses());
  const auto keys = some_keys(60);
  for (const auto& k : keys) REQUIRE(c->put(k, "v:" + k).is_ok());
  for (uint32_t id = 1; id <= 3; ++id) {
    for (const auto& [k, v] : fc.node(id).values()) {
      CHECK(owner_by_mod(k) == id);
      CHECK(v == "v:" + k);
    }
    CHECK(fc.node(id).max_epoch_seen() == 1);
  }
  for (const auto& k : keys) {
    auto v = c->get_copy(k);
    REQUIRE(v);
    CHECK(*v == "v:" + k);
  }
  // A batch over every node, with duplicates and absent keys, in input order.
  std::vector<std::string_view> ask = {keys[5],  "absent-1", keys[7], keys[5],
                                       keys[11], keys[0],    ""};
  auto got = c->get_many(ask);
  REQUIRE(got.size() == ask.size());
  for (size_t i = 0; i < ask.size(); ++i) {
    INFO("item " << i);
    if (ask[i] == "absent-1") {
      CHECK(got[i].status().code() == Code::kNotFound);
    } else if (ask[i].empty()) {
      CHECK(got[i].status().code() == Code::kInvalidArgument);
    } else {
      REQUIRE(got[i]);
      CHECK(got[i]->str() == "v:" + std::string(ask[i]));
    }
  }
  std::vector<kvrdma::KeyValue> items;
  std::vector<std::string> values;
  for (size_t i = 0; i < 30; ++i) values.push_back(std::string(i + 1, 'a' + i % 26));
  for (size_t i = 0; i < 30; ++i) items.push_back({keys[i], values[i]});
  auto put = c->put_many(items);
  REQUIRE(put.size() == items.size());
  for (const auto& s : put) CHECK(s.is_ok());
  for (size_t i = 0; i < 30; ++i) {
    CHECK(fc.node(owner_by_mod(keys[i])).values().at(keys[i]) == values[i]);
  }
  REQUIRE(c->del(keys[3]).is_ok());
  CHECK(c->del(keys[3]).code() == Code::kNotFound);

  auto loc = c->locate(keys[1]);
  REQUIRE(loc);
  CHECK(loc->node_id == owner_by_mod(keys[1]));
  CHECK(loc->node_address == fc.node(loc->node_id).address());
  CHECK(loc->slot == kvrdma::cluster::slot_of(keys[1]));
  CHECK(loc->length == values[1].size());
  CHECK(loc->epoch == 1);
}

TEST_CASE("router cluster: a stale map is refreshed and the call retried at the new owner") {
  FakeCluster fc;
  auto c = fc.connect(fc.addresses());
  const auto keys = some_keys(40);
  for (const auto& k : keys) REQUIRE(c->put(k, "v:" + k).is_ok());
  // Epoch 2: node 1's slots go to node 2, values with them.
  auto moved = [](uint32_t s) { return s % 3 == 0 ? 2u : s % 3 + 1; };
  for (const auto& [k, v] : fc.node(1).values()) fc.node(2).set(k, v);
  fc.publish(fc.map(2, moved));
  for (const auto& k : keys) {
    auto v = c->get_copy(k);
    INFO(k);
    REQUIRE(v);
    CHECK(*v == "v:" + k);
  }
  CHECK(fc.node(2).max_epoch_seen() == 2);
  // Batches too, after a further change (epoch 3: everything to node 3).
  for (uint32_t id = 1; id <= 2; ++id) {
    for (const auto& [k, v] : fc.node(id).values()) fc.node(3).set(k, v);
  }
  fc.publish(fc.map(3, [](uint32_t) { return 3u; }));
  std::vector<std::string_view> ask(keys.begin(), keys.end());
  auto got = c->get_many(ask);
  for (size_t i = 0; i < ask.size(); ++i) {
    REQUIRE(got[i]);
    CHECK(got[i]->str() == "v:" + keys[i]);
  }
  auto info = c->cluster();
  REQUIRE(info);
  CHECK(info->epoch == 3);
}

TEST_CASE("router cluster: a moved redirect is followed once and the map kept") {
  FakeCluster fc;
  auto c = fc.connect(fc.addresses());
  const std::string key = "redirected";
  const uint32_t owner = owner_by_mod(key);
  const uint32_t next = owner % 3 + 1;
  fc.node(next).set(key, "at the next owner");
  fc.node(next).import(kvrdma::cluster::slot_of(key));
  fc.node(owner).redirect(kvrdma::cluster::slot_of(key), next, fc.node(next).address());
  auto v = c->get_copy(key);
  INFO(v.status().message());
  REQUIRE(v);
  CHECK(*v == "at the next owner");
  CHECK(fc.node(next).max_epoch_seen() == 1);  // asked with the map it kept
}

TEST_CASE(
    "router cluster: a node that refuses but still owns the slot by the newest map is "
    "UNAVAILABLE: the cluster is changing") {
  FakeCluster fc;
  auto c = fc.connect(fc.addresses());
  const std::string key = "contested";
  const uint32_t owner = owner_by_mod(key);
  // The owner serves by a map that gives the slot elsewhere; every published map says it owns it.
  fc.node(owner).serve_by(fc.map(1, [](uint32_t s) { return (s + 1) % 3 + 1; }));
  Status s = c->put(key, "x");
  CHECK(s.code() == Code::kUnavailable);
  CHECK(s.message().find("cluster is changing") != std::string::npos);
}

TEST_CASE(
    "router cluster: with the first listed node down the client uses the next, and a "
    "dead owner's slots are found at their new owner") {
  FakeCluster fc;
  fc.node(1).stop();
  auto c = fc.connect(fc.addresses());
  // Node 1 died: the controller gave its slots to node 3.
  fc.publish(fc.map(2, [](uint32_t s) { return s % 3 == 0 ? 3u : s % 3 + 1; }));
  const auto keys = some_keys(30);
  for (const auto& k : keys) {
    INFO(k);
    REQUIRE(c->put(k, "v:" + k).is_ok());
    auto v = c->get_copy(k);
    REQUIRE(v);
    CHECK(*v == "v:" + k);
  }
  CHECK(fc.node(1).data_calls() == 0);
  auto info = c->cluster();
  REQUIRE(info);
  CHECK(info->cluster == "fake");
  CHECK(info->epoch == 2);
  REQUIRE(info->nodes.size() == 3);
  CHECK_FALSE(info->nodes[0].reachable);
  CHECK_FALSE(info->nodes[0].error.empty());
  CHECK(info->nodes[0].slots == 0);
  uint64_t keys_total = 0;
  for (size_t i = 1; i < 3; ++i) {
    CHECK(info->nodes[i].reachable);
    CHECK(info->nodes[i].id == i + 1);
    keys_total += info->nodes[i].keys;
  }
  CHECK(keys_total == keys.size());
  CHECK(info->nodes[1].slots + info->nodes[2].slots == kSlots);
}

TEST_CASE(
    "router cluster: a two-phase PUT whose commit is refused is redone whole at the new "
    "owner") {
  FakeCluster fc;
  auto c = fc.connect(fc.addresses());
  const std::string key = "big-one";
  const uint32_t owner = owner_by_mod(key);
  const uint32_t next = owner % 3 + 1;
  std::string value(48 << 10, '\0');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>('a' + i * 7 % 26);
  // A plain two-phase PUT lands byte-exact at the owner.
  REQUIRE(c->put("plain-big", value).is_ok());
  CHECK(fc.node(owner_by_mod("plain-big")).values().at("plain-big") == value);

  // Epoch 2 gives the key's slot to `next`; the owner still takes the PutBegin (it serves by
  // epoch 1) but refuses the commit.
  const uint32_t slot = kvrdma::cluster::slot_of(key);
  const SlotMap epoch2 = fc.map(2, [&](uint32_t s) { return s == slot ? next : s % 3 + 1; });
  {
    std::lock_guard lock(fc.published.mu);
    fc.published.map = epoch2;
  }
  fc.node(next).serve_by(epoch2);
  fc.node(owner).refuse_next_commit(next, fc.node(next).address());
  Status s = c->put(key, value);
  INFO(s.message());
  REQUIRE(s.is_ok());
  CHECK(fc.node(owner).values().count(key) == 0);
  REQUIRE(fc.node(next).values().count(key) == 1);
  CHECK(fc.node(next).values().at(key) == value);
  CHECK(fc.node(next).max_epoch_seen() == 2);
}

TEST_CASE("router cluster: a key refused again after its one retry is UNAVAILABLE, batch or not") {
  FakeCluster fc;
  auto c = fc.connect(fc.addresses());
  const std::string key = "bounced";
  const uint32_t owner = owner_by_mod(key);
  const uint32_t next = owner % 3 + 1;
  // The owner redirects to `next`, which does not import the slot and names the owner back.
  fc.node(owner).set(key, "x");
  fc.node(owner).redirect(kvrdma::cluster::slot_of(key), next, fc.node(next).address());
  auto v = c->get(key);
  REQUIRE_FALSE(v);
  CHECK(v.status().code() == Code::kUnavailable);
  CHECK(v.status().message().find("the cluster is changing") != std::string::npos);
  std::vector<std::string_view> ask = {"other", key};
  REQUIRE(c->put("other", "o").is_ok());
  auto got = c->get_many(ask);
  REQUIRE(got.size() == 2);
  REQUIRE(got[0]);
  CHECK(got[0]->str() == "o");
  REQUIRE_FALSE(got[1]);
  CHECK(got[1].status().code() == Code::kUnavailable);
  CHECK(got[1].status().message().find("the cluster is changing") != std::string::npos);
}

TEST_CASE("router cluster: a node slow to answer a new connection is waited for, not given up") {
  // gRPC's GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is the time a connection attempt gets; at 100 ms a
  // node that answered its first connection 300 ms late failed the call with UNAVAILABLE
  // ("timed out before receiving SETTINGS frame"), and on a loaded host a CLI call took ~1 s.
  FakeCluster fc;
  const int port2 = std::stoi(fc.node(2).address().substr(fc.node(2).address().rfind(':') + 1));
  SlowRelay slow(port2, std::chrono::milliseconds(300));
  SlotMap m = fc.map(1, [](uint32_t s) { return s % 3 + 1; });
  m.nodes[1].address = slow.address();
  fc.publish(m);
  auto c = fc.connect(fc.node(1).address());
  const auto keys = some_keys(30);
  auto at_2 = std::find_if(keys.begin(), keys.end(),
                           [](const std::string& k) { return owner_by_mod(k) == 2; });
  REQUIRE(at_2 != keys.end());
  Status s = c->put(*at_2, "v");
  INFO(s.message());
  REQUIRE(s.is_ok());
  CHECK(fc.node(2).values().at(*at_2) == "v");
}
