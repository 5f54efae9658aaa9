// Caller memory on the server (docs/design.md, "Caller memory"): the extra client regions a
// session announces with RegisterRegion, which GETs then name as their dest_region.
#include <fmt/format.h>

#include "rpc/status_map.h"
#include "server/service.h"

namespace kvrdma::server {
namespace {

// Bounds the mappings one session can make the server hold (each is a peer registration on
// libfabric, a mapping on the mock).
constexpr size_t kMaxRegionsPerSession = 4096;

grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* ctx, const Status& s) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(rpc::to_grpc(s));
  return reactor;
}

}  // namespace

Result<std::shared_ptr<transport::RemoteRegion>> Session::dest_region(uint64_t id) {
  if (id == 0) return region;
  std::lock_guard lock(mu);
  auto it = extra_regions.find(id);
  if (it == extra_regions.end()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("destination region {} is not registered with this session (it was "
                              "released, or never registered); register the memory again",
                              id));
  }
  return it->second;
}

grpc::ServerUnaryReactor* KvService::RegisterRegion(grpc::CallbackServerContext* ctx,
                                                    const v1::RegisterRegionRequest* req,
                                                    v1::RegisterRegionReply* reply) {
  log::Scope log_scope(logger_);
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  auto session = core_.sessions->find(req->session_id());
  if (!session) return finish(ctx, session.status());
  Session& s = **session;
  auto region = s.peer->attach(req->memory_descriptor());
  if (!region) return finish(ctx, region.status().with_context("RegisterRegion: client region"));
  if ((*region)->size() != req->region_size()) {
    return finish(ctx, Status(Code::kInvalidArgument,
                              fmt::format("RegisterRegion: region_size {} does not match the {} "
                                          "bytes the memory descriptor names",
                                          req->region_size(), (*region)->size())));
  }
  std::lock_guard lock(s.mu);
  if (s.extra_regions.size() >= kMaxRegionsPerSession) {
    return finish(ctx, Status(Code::kResourceExhausted,
                              fmt::format("this session already registered {} regions; release "
                                          "some (MemoryHandle::release) before registering more",
                                          kMaxRegionsPerSession)));
  }
  const uint64_t id = s.next_region++;
  s.extra_regions.emplace(id, std::move(*region));
  reply->set_region_id(id);
  KVRDMA_LOG_DEBUG("session {:x}: region {} registered ({} bytes)", s.id, id, req->region_size());
  return finish(ctx, Status());
}

grpc::ServerUnaryReactor* KvService::ReleaseRegion(grpc::CallbackServerContext* ctx,
                                                   const v1::ReleaseRegionRequest* req,
                                                   v1::ReleaseRegionReply*) {
  log::Scope log_scope(logger_);
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  auto session = core_.sessions->find(req->session_id());
  if (!session) return finish(ctx, session.status());
  std::shared_ptr<transport::RemoteRegion> gone;  // unmapped outside the lock
  Session& s = **session;
  std::lock_guard lock(s.mu);
  auto it = s.extra_regions.find(req->region_id());
  if (it == s.extra_regions.end()) {
    return finish(ctx, Status(Code::kInvalidArgument,
                              fmt::format("region {} is not registered with this session",
                                          req->region_id())));
  }
  gone = std::move(it->second);
  s.extra_regions.erase(it);
  return finish(ctx, Status());
}

}  // namespace kvrdma::server
