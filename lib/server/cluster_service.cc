// Cluster mode in KvService: the admission checks every data handler runs on its keys
// (docs/cluster.md, "Serving by the map"), and the two cluster RPCs, ClusterMap and Locate.
// Kept apart from service.cc so the single-node handlers read as before: each asks for these
// only when core_.cluster->enabled().
#include <fmt/format.h>

#include "cluster/slot_map.h"
#include "rpc/status_map.h"
#include "server/service.h"

namespace kvrdma::server {
namespace {

grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* ctx, const Status& s) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(rpc::to_grpc(s));
  return reactor;
}

}  // namespace

Status KvService::fenced() const {
  if (core_.cluster->serving()) return Status();
  return Status(Code::kUnavailable,
                fmt::format("node {} lost its cluster lease; it no longer serves data requests "
                            "(it was declared dead and its slots go to other nodes): ask another "
                            "node of cluster '{}' for the map",
                            core_.cluster->self(), core_.options.cluster));
}

Result<SlotVerdict> KvService::admit(const Session* session, std::string_view key,
                                     SlotOp op) const {
  const bool from_peer = session != nullptr && session->peer_node != 0;
  SlotVerdict v = core_.cluster->check(cluster::slot_of(key), op, from_peer);
  if (v.kind == SlotVerdict::kRefuse) return v.refusal();
  return v;
}

Status KvService::after_miss(const Session* session, std::string_view key, Status miss) const {
  const bool from_peer = session != nullptr && session->peer_node != 0;
  SlotVerdict v = core_.cluster->check(cluster::slot_of(key), SlotOp::kRead, from_peer);
  // kServeMovingOut: the value may already be at the next owner (the refusal says `moved`).
  if (v.kind != SlotVerdict::kServe) return v.refusal();
  return miss;
}

grpc::ServerUnaryReactor* KvService::ClusterMap(grpc::CallbackServerContext* ctx,
                                                const v1::ClusterMapRequest*,
                                                v1::ClusterMapReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  v1::ClusterMap* out = reply->mutable_map();
  if (!core_.cluster->enabled()) {
    // A single node: epoch 0 and itself, so a cluster-aware client works as a plain one.
    out->set_epoch(0);
    v1::ClusterNode* self = out->add_nodes();
    self->set_node_id(core_.options.node_id);
    self->set_address(core_.public_address);
    self->set_state("active");
    self->set_transport_kind(core_.transport->kind());
    return finish(ctx, Status());
  }
  // A fenced node's map is stale, and one with no map yet knows nothing: the client asks the
  // next node it knows (UNAVAILABLE), rather than taking epoch 0 for "not a cluster".
  if (Status f = fenced(); !f.is_ok()) return finish(ctx, f);
  std::shared_ptr<const cluster::SlotMap> map = core_.cluster->map();
  if (map->epoch == 0) {
    return finish(ctx, Status(Code::kUnavailable,
                              fmt::format("node {} of cluster '{}' has no slot map yet (it is "
                                          "joining, or etcd is not reachable); ask another node "
                                          "or retry shortly",
                                          core_.cluster->self(), core_.options.cluster)));
  }
  cluster::to_proto(*map, out);
  return finish(ctx, Status());
}

grpc::ServerUnaryReactor* KvService::Locate(grpc::CallbackServerContext* ctx,
                                            const v1::LocateRequest* req, v1::LocateReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  Status ok = core_.store->check(req->key(), 0);
  if (!ok.is_ok()) return finish(ctx, ok);
  const bool in_cluster = core_.cluster->enabled();
  if (in_cluster) {
    if (Status f = fenced(); !f.is_ok()) return finish(ctx, f);
    auto v = admit(nullptr, req->key(), SlotOp::kRead);
    if (!v) return finish(ctx, v.status());
  }
  auto ref = core_.store->get(req->key());
  if (!ref) {
    return finish(ctx, in_cluster ? after_miss(nullptr, req->key(), ref.status()) : ref.status());
  }
  // `ref` pins the value until the answer is built: the offset and length stay those of one
  // whole value. Like any location, it may be stale by the time the caller uses it.
  v1::ValueLocation* loc = reply->mutable_location();
  loc->set_node_id(core_.options.node_id);
  loc->set_node_address(core_.public_address);
  loc->set_region_descriptor(core_.pool_region->descriptor());
  loc->set_offset(ref->pool_offset());
  loc->set_length(ref->size());
  loc->set_epoch(in_cluster ? core_.cluster->map()->epoch : 0);
  loc->set_slot(cluster::slot_of(req->key()));
  return finish(ctx, Status());
}

}  // namespace kvrdma::server
