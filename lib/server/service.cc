#include "server/service.h"

#include <fmt/format.h>

#include "cluster/slot_map.h"
#include "common/logging.h"
#include "kvrdma/version.h"
#include "rpc/security.h"
#include "rpc/stats_wire.h"
#include "rpc/status_map.h"
#include "server/replication.h"

namespace kvrdma::server {
namespace {

using std::chrono::milliseconds;

grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* ctx, const Status& s) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(rpc::to_grpc(s));
  return reactor;
}

}  // namespace

transport::Transport::Clock::time_point write_deadline(grpc::CallbackServerContext* ctx) {
  constexpr auto kMax = std::chrono::seconds(60);
  auto left = ctx->deadline() - std::chrono::system_clock::now();
  if (left > kMax || left < std::chrono::nanoseconds(0)) left = kMax;
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(left);
}

ServerStats ServerCore::stats() const {
  ServerStats s;
  // Read first: a change during the reads below moves the version past this one, so a client
  // waiting for a version after it sees that change.
  s.version = changes.version();
  s.node_id = options.node_id;
  s.transport = transport->kind();
  auto st = store->stats();
  s.keys = st.keys;
  s.value_bytes = st.value_bytes;
  s.pinned = st.pinned;
  s.evictions = st.evictions;
  s.expirations = st.expirations;
  auto u = pool->usage();
  s.pool_bytes = u.total;
  s.pool_used_bytes = u.used;
  s.pool_free_bytes = u.free;
  s.pool_largest_free_bytes = u.largest_free;
  s.sessions = sessions->size();
  s.reservations = sessions->reservations();
  const Counters& c = counters;
  s.gets = c.gets;
  s.get_hits = c.get_hits;
  s.get_misses = c.get_misses;
  s.puts = c.puts;
  s.deletes = c.deletes;
  s.bytes_inline_sent = c.bytes_inline_sent;
  s.bytes_transport_written = c.bytes_transport_written;
  s.bytes_inline_received = c.bytes_inline_received;
  s.bytes_put_committed = c.bytes_put_committed;
  s.reservations_expired = c.reservations_expired;
  s.sessions_expired = c.sessions_expired;
  s.cluster = options.cluster;
  s.keys_moved_out = c.keys_moved_out;
  s.keys_moved_in = c.keys_moved_in;
  if (cluster && cluster->enabled()) {
    std::shared_ptr<const cluster::SlotMap> map = cluster->map();
    s.map_epoch = map->epoch;
    s.slots = map->slots_of(cluster->self());
  }
  return s;
}

Status KvService::authorize(grpc::CallbackServerContext* ctx) const {
  return rpc::check_token(*ctx, core_.options.security.auth_token);
}

void KvService::push_value(store::ValueRef ref, std::shared_ptr<transport::RemoteRegion> dst,
                           uint64_t offset, transport::Transport::Clock::time_point deadline,
                           transport::Completion then) {
  then = core_.metrics.timed(Op::kTransportWrite, std::move(then));
  const uint64_t src = ref.pool_offset(), len = ref.size();
  // Shared only because a Completion must be copyable; this is the one owner.
  auto pinned = std::make_shared<store::ValueRef>(std::move(ref));
  core_.transport->write(*core_.pool_region, src, std::move(dst), offset, len, deadline,
                         [pinned = std::move(pinned), then = std::move(then)](Status s) mutable {
                           pinned.reset();  // unpin: the bytes are at the client, or failed
                           then(std::move(s));
                         });
}

Status KvService::take_transfer_slot(Session& session) const {
  if (session.transfers.fetch_add(1) < core_.options.max_inflight) return Status();
  session.transfers.fetch_sub(1);
  return Status(Code::kResourceExhausted,
                fmt::format("this session already has {} GETs in flight (--max-inflight); wait "
                            "for some to finish",
                            core_.options.max_inflight));
}

grpc::ServerUnaryReactor* KvService::Hello(grpc::CallbackServerContext* ctx,
                                           const v1::HelloRequest* req, v1::HelloReply* reply) {
  log::Scope log_scope(logger_);  // a gRPC thread, shared by every server of the process
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  BumpOnReturn changed(core_.changes);
  auto& t = *core_.transport;
  if (req->transport_kind() != t.kind()) {
    return finish(ctx, Status(Code::kFailedPrecondition,
                              fmt::format("client uses transport '{}' but this server runs '{}'; "
                                          "start both with the same --mock / --provider",
                                          req->transport_kind(), t.kind())));
  }
  if (req->peer_node() != 0 && !core_.cluster->enabled()) {
    return finish(ctx, Status(Code::kFailedPrecondition,
                              fmt::format("Hello from cluster node {}, but this server is not in "
                                          "cluster mode; start it with --cluster",
                                          req->peer_node() - 1)));
  }
  auto peer = t.connect(req->transport_address());
  if (!peer) return finish(ctx, peer.status().with_context("Hello: client transport address"));
  auto region = (*peer)->attach(req->memory_descriptor());
  if (!region) return finish(ctx, region.status().with_context("Hello: client receive region"));
  if ((*region)->size() != req->region_size()) {
    return finish(ctx, Status(Code::kInvalidArgument,
                              fmt::format("Hello: region_size {} does not match the {} bytes the "
                                          "memory descriptor names",
                                          req->region_size(), (*region)->size())));
  }
  auto added = core_.sessions->add(req->client_id(), std::move(*peer), std::move(*region),
                                   core_.options.max_sessions, req->peer_node());
  if (!added) return finish(ctx, added.status());
  auto& s = *added;
  KVRDMA_LOG_DEBUG("session {:x} opened by client {} ({} byte buffer, version {})", s->id,
                   req->client_id(), req->region_size(), req->version());
  reply->set_session_id(s->id);
  reply->set_node_id(core_.options.node_id);
  reply->set_transport_kind(t.kind());
  reply->set_transport_address(t.address());
  reply->set_memory_descriptor(core_.pool_region->descriptor());
  reply->set_inline_threshold(core_.options.inline_threshold);
  reply->set_put_inline_threshold(core_.put_inline_threshold);
  uint64_t max_value =
      core_.options.max_value_bytes ? core_.options.max_value_bytes : core_.pool->size();
  reply->set_max_value_bytes(std::min<uint64_t>(max_value, core_.pool->size()));
  reply->set_lease_ms(static_cast<uint64_t>(core_.sessions->lease().count()));
  if (!req->channel_offer().empty()) {
    // A refused offer is not an error: the session works over gRPC alone.
    std::string accept;
    // In a replicated cluster too: reads ride it, and writes of replicated slots are refused on
    // it (serve_put / serve_delete; replicated writes finish after every replica acknowledged,
    // which the channel's synchronous handler cannot wait for): the client sends those by gRPC.
    Status opened = !core_.open_channel
                        ? Status(Code::kFailedPrecondition, "this server runs with --channel false")
                        : core_.open_channel(s, req->channel_offer(), &accept);
    if (opened.is_ok()) {
      reply->set_channel_accept(std::move(accept));
    } else {
      reply->set_channel_refused(opened.to_string());
      KVRDMA_LOG_DEBUG("session {:x}: channel refused: {}", s->id, opened.to_string());
    }
  }
  return finish(ctx, Status());
}

grpc::ServerUnaryReactor* KvService::KeepAlive(grpc::CallbackServerContext* ctx,
                                               const v1::KeepAliveRequest* req,
                                               v1::KeepAliveReply*) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  return finish(ctx, core_.sessions->find(req->session_id()).status());
}

grpc::ServerUnaryReactor* KvService::Goodbye(grpc::CallbackServerContext* ctx,
                                             const v1::GoodbyeRequest* req, v1::GoodbyeReply*) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  BumpOnReturn changed(core_.changes);
  if (!core_.sessions->remove(req->session_id())) {
    return finish(ctx, core_.sessions->find(req->session_id()).status());
  }
  return finish(ctx, Status());
}

grpc::ServerUnaryReactor* KvService::Get(grpc::CallbackServerContext* ctx,
                                         const v1::GetRequest* req, v1::GetReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  auto* reactor = ctx->DefaultReactor();
  std::optional<Status> now = serve_get(*req, reply, write_deadline(ctx),
                                        [reactor](Status s) { reactor->Finish(rpc::to_grpc(s)); });
  if (now) reactor->Finish(rpc::to_grpc(*now));
  return reactor;
}

std::optional<Status> KvService::serve_get(const v1::GetRequest& req, v1::GetReply* reply,
                                           transport::Transport::Clock::time_point deadline,
                                           std::function<void(Status)> done,
                                           uint64_t inline_limit) {
  OpTimer timer(core_.metrics, Op::kGetInline);  // handed to the write's completion if one starts
  auto session = core_.sessions->find(req.session_id());
  if (!session) return session.status();
  Status ok = core_.store->check(req.key(), 0);
  if (!ok.is_ok()) return ok;
  const bool in_cluster = core_.cluster->enabled();
  if (in_cluster) {
    KVRDMA_RETURN_IF_ERROR(fenced());
    KVRDMA_RETURN_IF_ERROR(admit_read(session->get(), req.key(), req.min_version()));
  }
  ++core_.counters.gets;
  auto ref = core_.store->get(req.key());
  if (!ref) {
    ++core_.counters.get_misses;
    return in_cluster ? after_miss(session->get(), req.key(), ref.status()) : ref.status();
  }
  ++core_.counters.get_hits;
  const uint64_t len = ref->size();
  reply->set_value_len(len);
  reply->set_node_id(core_.options.node_id);
  if (len <= std::min(inline_limit, core_.options.inline_threshold)) {
    reply->set_is_inline(true);
    reply->set_value(reinterpret_cast<const char*>(ref->data()), len);
    core_.counters.bytes_inline_sent += len;
    return Status();
  }
  if (len > req.dest_capacity()) {
    reply->set_written(false);  // the client reserves value_len bytes and asks again
    return Status();
  }
  auto dest = (*session)->dest_region(req.dest_region());  // caller memory; 0: receive region
  if (!dest) return dest.status();
  const std::shared_ptr<transport::RemoteRegion>& region = *dest;
  uint64_t off = req.dest_offset();
  if (off > region->size() || req.dest_capacity() > region->size() - off) {
    return Status(Code::kInvalidArgument,
                  fmt::format("destination [{}, +{}) lies outside the {}-byte region {} "
                              "this session registered",
                              off, req.dest_capacity(), region->size(), req.dest_region()));
  }
  std::shared_ptr<Session> owner = *session;
  if (Status busy = take_transfer_slot(*owner); !busy.is_ok()) return busy;
  Counters& counters = core_.counters;
  auto written = [reply, len, &counters, &changes = core_.changes, owner,
                  done = std::move(done)](Status s) {
    owner->transfers.fetch_sub(1);
    changes.bump();
    if (s.is_ok()) {
      reply->set_written(true);
      counters.bytes_transport_written += len;
    }
    done(s.with_context("transport write"));
  };
  push_value(std::move(*ref), region, off, deadline,
             timer.then(Op::kGetWritten, std::move(written)));
  return std::nullopt;
}

grpc::ServerUnaryReactor* KvService::Put(grpc::CallbackServerContext* ctx,
                                         const v1::PutRequest* req, v1::PutReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  if (core_.replication) {
    auto session = core_.sessions->find(req->session_id());
    if (!session) return finish(ctx, session.status());
    if (req->replica_version() != 0) {  // a primary's push (replication.h)
      BumpOnReturn changed(core_.changes);
      return finish(ctx, core_.replication->apply_put(**session, *req));
    }
    if ((*session)->peer_node == 0 && core_.replication->replicates(req->key())) {
      return replicated_put(ctx, *session, req, reply);
    }
  }
  return finish(ctx, serve_put(*req));
}

grpc::ServerUnaryReactor* KvService::replicated_put(grpc::CallbackServerContext* ctx,
                                                    const std::shared_ptr<Session>& session,
                                                    const v1::PutRequest* req,
                                                    v1::PutReply* reply) {
  BumpOnReturn changed(core_.changes);
  if (Status f = fenced(); !f.is_ok()) return finish(ctx, f);
  // Held from the check until the value is stored (see serve_put).
  std::shared_lock<std::shared_mutex> gate(core_.cluster->write_gate());
  auto v = admit(session.get(), req->key(), SlotOp::kWrite);
  if (!v) return finish(ctx, v.status());
  auto store = [&] {
    return core_.store->put(req->key(), req->value(), milliseconds(req->ttl_ms()));
  };
  return replicated(
      ctx, req->key(), false, store, [reply](uint64_t v) { reply->set_version(v); },
      req->value().size(), &core_.counters.bytes_inline_received);
}

Status KvService::serve_put(const v1::PutRequest& request) {
  const v1::PutRequest* req = &request;
  OpTimer timer(core_.metrics, Op::kPutInline);
  BumpOnReturn changed(core_.changes);
  auto session = core_.sessions->find(req->session_id());
  if (!session) return session.status();
  if (core_.replication && (*session)->peer_node == 0 &&
      core_.replication->replicates(req->key())) {
    // Only the request channel gets here with such a key (Put takes it first): typed, so the
    // client sends it again over gRPC.
    return rpc::replicated_slot(cluster::slot_of(req->key()),
                                "this key's slot is replicated: send its PUT over gRPC, not the "
                                "request channel");
  }
  // Cluster mode: held from the check until the value is stored, so no write lands in a slot
  // after its hand-off (the mover takes the gate exclusively to hand off).
  std::shared_lock<std::shared_mutex> gate;
  if (core_.cluster->enabled()) {
    KVRDMA_RETURN_IF_ERROR(fenced());
    gate = std::shared_lock(core_.cluster->write_gate());
    auto v = admit(session->get(), req->key(), SlotOp::kWrite);
    if (!v) return v.status();
  }
  Status s = core_.store->put(req->key(), req->value(), milliseconds(req->ttl_ms()));
  if (s.is_ok()) {
    ++((*session)->peer_node != 0 ? core_.counters.keys_moved_in : core_.counters.puts);
    core_.counters.bytes_inline_received += req->value().size();
  }
  return s;
}

grpc::ServerUnaryReactor* KvService::PutBegin(grpc::CallbackServerContext* ctx,
                                              const v1::PutBeginRequest* req,
                                              v1::PutBeginReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  BumpOnReturn changed(core_.changes);
  auto session = core_.sessions->find(req->session_id());
  if (!session) return finish(ctx, session.status());
  Status ok = core_.store->check(req->key(), req->value_len());
  if (!ok.is_ok()) return finish(ctx, ok);
  if (req->value_len() == 0) {
    return finish(ctx, Status(Code::kInvalidArgument,
                              "PutBegin of an empty value; use Put for small values"));
  }
  uint32_t slot = 0;
  if (core_.cluster->enabled()) {
    // No gate here: nothing is stored yet. PutCommit checks the slot again, under the gate.
    if (Status f = fenced(); !f.is_ok()) return finish(ctx, f);
    Status v = req->replica_version() != 0 && core_.replication
                   ? core_.replication->admit_push(**session, req->key(), req->map_epoch())
                   : admit(session->get(), req->key(), SlotOp::kWrite).status();
    if (!v.is_ok()) return finish(ctx, v);
    slot = cluster::slot_of(req->key());
  }
  {
    Session& owner = **session;
    std::lock_guard lock(owner.mu);
    if (owner.reservations.size() >= core_.options.max_inflight) {
      return finish(ctx, Status(Code::kResourceExhausted,
                                fmt::format("this session already has {} PUTs open "
                                            "(--max-inflight); commit or abort some first",
                                            owner.reservations.size())));
    }
  }
  auto a = core_.store->reserve(req->value_len());
  if (!a) return finish(ctx, a.status());
  Reservation r;
  r.key = req->key();
  r.length = req->value_len();
  r.ttl = milliseconds(req->ttl_ms());
  auto ttl = milliseconds(core_.options.reservation_ttl_ms);
  r.begun = std::chrono::steady_clock::now();
  r.expires = r.begun + ttl;
  reply->set_remote_offset(a->offset());
  reply->set_expires_in_ms(core_.options.reservation_ttl_ms);
  r.allocation = std::move(*a);
  r.incoming = core_.transport->expect_writes();
  r.slot = slot;
  r.replica_version = req->replica_version();
  Session& s = **session;
  std::lock_guard lock(s.mu);
  uint64_t id = s.next_reservation++;
  s.reservations.emplace(id, std::move(r));
  reply->set_reservation_id(id);
  return finish(ctx, Status());
}

namespace {

// Takes reservation `id` out of `session`; NOT_FOUND when it is not this session's.
Result<Reservation> take_reservation(Session& session, uint64_t id) {
  std::lock_guard lock(session.mu);
  auto it = session.reservations.find(id);
  if (it == session.reservations.end()) {
    return Status(Code::kNotFound,
                  fmt::format("reservation {} is not held by this session (expired, already "
                              "committed, or never made); start the PUT again",
                              id));
  }
  Reservation r = std::move(it->second);
  session.reservations.erase(it);
  return r;
}

}  // namespace

grpc::ServerUnaryReactor* KvService::PutCommit(grpc::CallbackServerContext* ctx,
                                               const v1::PutCommitRequest* req,
                                               v1::PutCommitReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  BumpOnReturn changed(core_.changes);
  auto session = core_.sessions->find(req->session_id());
  if (!session) return finish(ctx, session.status());
  auto r = take_reservation(**session, req->reservation_id());
  if (!r) return finish(ctx, r.status());
  if (r->replica_version != 0 && core_.replication) {  // a primary's push (replication.h)
    return finish(ctx, core_.replication->apply_commit(**session, std::move(*r)));
  }
  // Cluster mode: the slot may have been handed off (or the map changed) since PutBegin. A
  // refusal frees the reservation (`r` goes with this call); the gate is held until the value
  // is committed, so a hand-off cannot slip in between the check and the commit.
  std::shared_lock<std::shared_mutex> gate;
  const bool from_peer = (*session)->peer_node != 0;
  if (core_.cluster->enabled()) {
    if (Status f = fenced(); !f.is_ok()) return finish(ctx, f);
    gate = std::shared_lock(core_.cluster->write_gate());
    SlotVerdict v = core_.cluster->check(r->slot, SlotOp::kWrite, from_peer);
    if (v.kind == SlotVerdict::kRefuse) return finish(ctx, v.refusal());
  }
  uint64_t len = r->length;
  if (core_.replication && !from_peer && core_.replication->replicates(r->key)) {
    auto store = [&] { return core_.store->commit(r->key, std::move(r->allocation), len, r->ttl); };
    return replicated(
        ctx, r->key, false, store, [reply](uint64_t v) { reply->set_version(v); }, len,
        &core_.counters.bytes_put_committed);
  }
  Status s = core_.store->commit(r->key, std::move(r->allocation), len, r->ttl);
  core_.metrics.observe_since(Op::kPutTwoPhase, r->begun);
  if (s.is_ok()) {
    ++(from_peer ? core_.counters.keys_moved_in : core_.counters.puts);
    core_.counters.bytes_put_committed += len;
  }
  return finish(ctx, s);
}

grpc::ServerUnaryReactor* KvService::PutAbort(grpc::CallbackServerContext* ctx,
                                              const v1::PutAbortRequest* req, v1::PutAbortReply*) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  BumpOnReturn changed(core_.changes);
  auto session = core_.sessions->find(req->session_id());
  if (!session) return finish(ctx, session.status());
  return finish(ctx, take_reservation(**session, req->reservation_id()).status());
}

grpc::ServerUnaryReactor* KvService::Delete(grpc::CallbackServerContext* ctx,
                                            const v1::DeleteRequest* req, v1::DeleteReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  if (core_.replication) {
    auto session = core_.sessions->find(req->session_id());
    if (!session) return finish(ctx, session.status());
    Status ok = core_.store->check(req->key(), 0);
    if (!ok.is_ok()) return finish(ctx, ok);
    if (req->replica_version() != 0) {  // a primary's push (replication.h)
      BumpOnReturn changed(core_.changes);
      bool there = false;
      Status applied = core_.replication->apply_delete(**session, *req, &there);
      reply->set_existed(there);
      return finish(ctx, applied);
    }
    if (core_.cluster->enabled() && (*session)->peer_node == 0 &&
        core_.replication->replicates(req->key())) {
      BumpOnReturn changed(core_.changes);
      return replicated_delete(ctx, *session, *req, reply);
    }
  }
  return finish(ctx, serve_delete(*req, reply, write_deadline(ctx)));
}

Status KvService::serve_delete(const v1::DeleteRequest& req, v1::DeleteReply* reply,
                               transport::Transport::Clock::time_point deadline) {
  OpTimer timer(core_.metrics, Op::kDelete);
  BumpOnReturn changed(core_.changes);
  auto session = core_.sessions->find(req.session_id());
  if (!session) return session.status();
  Status ok = core_.store->check(req.key(), 0);
  if (!ok.is_ok()) return ok;
  if (core_.replication && (*session)->peer_node == 0 &&
      core_.replication->replicates(req.key())) {  // see serve_put
    return rpc::replicated_slot(cluster::slot_of(req.key()),
                                "this key's slot is replicated: send its DELETE over gRPC, not the "
                                "request channel");
  }
  bool existed = false;
  std::optional<SlotVerdict> moving_out;  // cluster mode: the slot moves to the next owner
  if (!core_.cluster->enabled()) {
    existed = core_.store->erase(req.key());
  } else {
    if (Status f = fenced(); !f.is_ok()) return f;
    std::shared_lock gate(core_.cluster->write_gate());  // see Put
    auto v = admit(session->get(), req.key(), SlotOp::kDelete);
    if (!v) return v.status();
    existed = core_.store->erase(req.key());
    if (v->kind == SlotVerdict::kServeMovingOut) moving_out = std::move(*v);
  }
  // The value may already be at the next owner: delete it there too. Not under the gate: this
  // may take up to the call's deadline, and the mover must not wait for it.
  if (moving_out && core_.forward_delete) {
    Status there = core_.forward_delete(req.key(), moving_out->detail, deadline);
    if (there.is_ok()) {
      existed = true;
    } else if (there.code() != Code::kNotFound) {
      reply->set_existed(existed);
      return there.with_context(fmt::format(
          "DELETE {} the key here, but node {} (the slot's next owner) may still hold it; retry "
          "the DELETE",
          existed ? "erased" : "did not find", moving_out->detail.owner_id()));
    }
  }
  reply->set_existed(existed);
  if (!existed) return Status(Code::kNotFound, "key not found");
  ++core_.counters.deletes;
  return Status();
}

grpc::ServerUnaryReactor* KvService::Stats(grpc::CallbackServerContext* ctx,
                                           const v1::StatsRequest* req, v1::StatsReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  if (req->wait_ms() == 0) {
    rpc::to_reply(core_.stats(), reply);
    return finish(ctx, Status());
  }
  // Long poll: the board's thread finishes the call once the version passes changed_since, or
  // when the wait is over. The wait keeps the last tenth of the time before the call's deadline
  // for the answer (ChangeBoard::wait_within): a long poll answers with the current figures,
  // never with DEADLINE_EXCEEDED.
  const auto wait = ChangeBoard::wait_within(milliseconds(req->wait_ms()),
                                             ctx->deadline() - std::chrono::system_clock::now());
  auto* reactor = ctx->DefaultReactor();
  core_.changes.wait(req->changed_since(), std::chrono::steady_clock::now() + wait,
                     [this, reply, reactor] {
                       rpc::to_reply(core_.stats(), reply);
                       reactor->Finish(grpc::Status::OK);
                     });
  return reactor;
}

}  // namespace kvrdma::server
