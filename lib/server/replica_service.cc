// Replicated slots in KvService (docs/cluster.md "Replicas"): a client's write at the primary is
// applied here and answered once every replica holds it; a GET at a replica is served only when
// the replica holds what the client has seen acknowledged. The pushing is Replication's.
#include <fmt/format.h>

#include "cluster/slot_map.h"
#include "rpc/status_map.h"
#include "server/replication.h"
#include "server/service.h"

namespace kvrdma::server {
namespace {

using std::chrono::milliseconds;

grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* ctx, const Status& s) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(rpc::to_grpc(s));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* KvService::DropReplicaSlots(grpc::CallbackServerContext* ctx,
                                                      const v1::DropReplicaSlotsRequest* req,
                                                      v1::DropReplicaSlotsReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  if (core_.replication == nullptr) {
    return finish(ctx, Status(Code::kFailedPrecondition,
                              "DropReplicaSlots is for cluster nodes with replicas (--replicas "
                              "2 or more); this server keeps none"));
  }
  auto session = core_.sessions->find(req->session_id());
  if (!session) return finish(ctx, session.status());
  BumpOnReturn changed(core_.changes);
  auto dropped = core_.replication->drop_for_fill(**session, req->map_epoch(),
                                                  std::span<const uint32_t>(req->slots().data(),
                                                                            req->slots_size()));
  if (dropped) reply->set_dropped(*dropped);
  return finish(ctx, dropped.status());
}

Status KvService::admit_read(const Session* session, std::string_view key,
                             uint64_t min_version) const {
  KVRDMA_RETURN_IF_ERROR(admit(session, key, SlotOp::kRead).status());
  if (core_.replication == nullptr) return Status();
  return core_.replication->check_read(key, min_version);
}

grpc::ServerUnaryReactor* KvService::replicated(grpc::CallbackServerContext* ctx,
                                                std::string_view key, bool erase,
                                                const std::function<Status()>& store,
                                                std::function<void(uint64_t)> version,
                                                uint64_t bytes, std::atomic<uint64_t>* counter) {
  auto* reactor = ctx->DefaultReactor();
  core_.replication
      ->write(key, erase, store, write_deadline(ctx),
              [this, reactor, version = std::move(version), bytes, counter](Status s, uint64_t v) {
                if (v !=
                    0) {  // applied here (counted even when a replica failed: the store changed)
                  ++core_.counters.puts;
                  *counter += bytes;
                  core_.changes.bump();
                }
                if (s.is_ok()) version(v);
                reactor->Finish(rpc::to_grpc(s));
              });
  return reactor;
}

grpc::ServerUnaryReactor* KvService::replicated_delete(grpc::CallbackServerContext* ctx,
                                                       std::shared_ptr<Session> session,
                                                       const v1::DeleteRequest& req,
                                                       v1::DeleteReply* reply) {
  if (Status f = fenced(); !f.is_ok()) return finish(ctx, f);
  std::shared_lock gate(core_.cluster->write_gate());  // as in Delete
  auto v = admit(session.get(), req.key(), SlotOp::kDelete);
  if (!v) return finish(ctx, v.status());
  std::optional<SlotVerdict> moving_out;
  if (v->kind == SlotVerdict::kServeMovingOut) moving_out = std::move(*v);
  auto existed = std::make_shared<bool>(false);
  auto* reactor = ctx->DefaultReactor();
  const auto deadline = write_deadline(ctx);
  std::string key = req.key();
  core_.replication->write(
      key, true,
      [&] {
        *existed = core_.store->erase(key);
        return Status();
      },
      deadline,
      [this, reactor, reply, existed, moving_out = std::move(moving_out), key,
       deadline](Status s, uint64_t version) {
        // On a push worker (or this thread): the forwarding below may block until `deadline`.
        if (s.is_ok() && moving_out && core_.forward_delete) {
          Status there = core_.forward_delete(key, moving_out->detail, deadline);
          if (there.is_ok()) {
            *existed = true;
          } else if (there.code() != Code::kNotFound) {
            s =
                there.with_context(fmt::format("DELETE reached the replicas, but node {} (the "
                                               "slot's next owner) may still hold the key; "
                                               "retry the DELETE",
                                               moving_out->detail.owner_id()));
          }
        }
        reply->set_existed(*existed);
        if (s.is_ok()) {
          reply->set_version(version);
          if (!*existed) s = Status(Code::kNotFound, "key not found");
          else ++core_.counters.deletes;
        }
        core_.changes.bump();
        reactor->Finish(rpc::to_grpc(s));
      });
  return reactor;
}

grpc::ServerUnaryReactor* KvService::replicated_put_many(grpc::CallbackServerContext* ctx,
                                                         const Session& session,
                                                         const v1::PutManyRequest& req,
                                                         v1::PutManyReply* reply) {
  // Every result exists before any push completes: workers fill them in concurrently.
  for (int i = 0; i < req.items_size(); ++i) {
    reply->add_results();
    reply->add_versions(0);
  }
  auto* reactor = ctx->DefaultReactor();
  auto pending = std::make_shared<std::atomic<int>>(1);  // 1: this loop, until it is done
  auto one_done = [pending, reactor] {
    if (pending->fetch_sub(1) == 1) reactor->Finish(grpc::Status::OK);
  };
  const auto deadline = write_deadline(ctx);
  const milliseconds ttl(req.ttl_ms());
  std::shared_lock gate(core_.cluster->write_gate());  // see Put
  for (int i = 0; i < req.items_size(); ++i) {
    const v1::PutManyItem& item = req.items(i);
    v1::ItemStatus* out = reply->mutable_results(i);
    uint64_t* version = reply->mutable_versions()->Mutable(i);
    if (item.value().size() > core_.options.inline_threshold) {
      rpc::to_item(out, Status(Code::kInvalidArgument,
                               fmt::format("PutMany value of {} bytes is above the inline "
                                           "threshold of {} bytes; store it with "
                                           "PutBegin/PutCommit",
                                           item.value().size(), core_.options.inline_threshold)));
      continue;
    }
    if (auto v = admit(&session, item.key(), SlotOp::kWrite); !v) {
      rpc::to_item(out, v.status());
      continue;
    }
    auto store = [&] { return core_.store->put(item.key(), item.value(), ttl); };
    if (!core_.replication->replicates(item.key())) {  // importing during a move
      Status s = store();
      if (s.is_ok()) ++core_.counters.puts;
      rpc::to_item(out, s);
      continue;
    }
    pending->fetch_add(1);
    const uint64_t bytes = item.value().size();
    core_.replication->write(item.key(), false, store, deadline,
                             [this, out, version, one_done, bytes](Status s, uint64_t v) {
                               if (v != 0) {
                                 ++core_.counters.puts;
                                 core_.counters.bytes_inline_received += bytes;
                               }
                               // Its own element: the field was sized before any push began.
                               if (s.is_ok()) *version = v;
                               rpc::to_item(out, s);
                               one_done();
                             });
  }
  gate.unlock();
  one_done();
  return reactor;
}

}  // namespace kvrdma::server
