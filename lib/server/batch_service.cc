// GetMany and PutMany: the batch calls of KvService. Kept apart from service.cc so the single-key
// handlers can change without touching these. A GetMany issues every transport write of the batch
// before waiting for any, and finishes the call when the last one completes.
#include <fmt/format.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>

#include "common/logging.h"
#include "rpc/status_map.h"
#include "server/service.h"

namespace kvrdma::server {
namespace {

using std::chrono::milliseconds;

// Per call: more items is INVALID_ARGUMENT, more request bytes (keys + values) is
// RESOURCE_EXHAUSTED. Inline reply bytes beyond kMaxReplyInline are deferred per item (the client
// asks again). All stay well under the server's gRPC message limit (>= 4 MiB).
constexpr size_t kMaxItems = 4096;
constexpr uint64_t kMaxRequestBytes = 3ull << 20;
constexpr uint64_t kMaxReplyInline = 2ull << 20;

grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* ctx, const Status& s) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(rpc::to_grpc(s));
  return reactor;
}

// Checks the shape of a batch before any work: item count and request bytes.
template <typename Items, typename Bytes>
Status check_batch(std::string_view call, const Items& items, Bytes bytes_of) {
  if (static_cast<size_t>(items.size()) > kMaxItems) {
    return Status(Code::kInvalidArgument,
                  fmt::format("{} of {} items exceeds the limit of {} per call; split the batch",
                              call, items.size(), kMaxItems));
  }
  uint64_t total = 0;
  for (const auto& it : items) total += bytes_of(it);
  if (total > kMaxRequestBytes) {
    return Status(Code::kResourceExhausted,
                  fmt::format("{} carries {} bytes of keys and values, over the limit of {} per "
                              "call; split the batch",
                              call, total, kMaxRequestBytes));
  }
  return Status();
}

// Answers the call when the last outstanding write (plus the issuing pass itself) is done.
// The call holds one of its session's --max-inflight transfer slots until then.
struct PendingWrites {
  std::function<void(Status)> answer;
  std::shared_ptr<Session> owner;
  ChangeBoard* changes = nullptr;  // bumped when the call's pins are all released
  std::atomic<size_t> left{1};     // 1 = the issuing pass
  void done() {
    if (left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      owner->transfers.fetch_sub(1);
      changes->bump();
      answer(Status());
    }
  }
};

}  // namespace

grpc::ServerUnaryReactor* KvService::GetMany(grpc::CallbackServerContext* ctx,
                                             const v1::GetManyRequest* req,
                                             v1::GetManyReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  auto* reactor = ctx->DefaultReactor();
  std::optional<Status> now = serve_get_many(*req, reply, write_deadline(ctx), [reactor](Status s) {
    reactor->Finish(rpc::to_grpc(s));
  });
  if (now) reactor->Finish(rpc::to_grpc(*now));
  return reactor;
}

std::optional<Status> KvService::serve_get_many(const v1::GetManyRequest& request,
                                                v1::GetManyReply* reply,
                                                transport::Transport::Clock::time_point deadline,
                                                std::function<void(Status)> done,
                                                uint64_t inline_limit, uint64_t inline_budget) {
  done = core_.metrics.timed(Op::kGetBatch, std::move(done));
  const v1::GetManyRequest* req = &request;
  auto session = core_.sessions->find(req->session_id());
  if (!session) return session.status();
  Status shape =
      check_batch("GetMany", req->items(), [](const v1::GetManyItem& i) { return i.key().size(); });
  if (!shape.is_ok()) return shape;
  const bool in_cluster = core_.cluster->enabled();
  if (in_cluster) KVRDMA_RETURN_IF_ERROR(fenced());
  std::shared_ptr<Session> owner = *session;
  if (Status busy = take_transfer_slot(*owner); !busy.is_ok()) return busy;
  reply->set_node_id(core_.options.node_id);
  // Reserve every result first: the write completions fill their own element concurrently and
  // the repeated field must not reallocate under them.
  for (int i = 0; i < req->items_size(); ++i) reply->add_results();
  Counters& counters = core_.counters;
  auto pending = std::make_shared<PendingWrites>();
  pending->answer = std::move(done);
  pending->owner = std::move(owner);
  pending->changes = &core_.changes;
  uint64_t inline_bytes = 0;
  struct {
    uint64_t gets = 0, hits = 0, misses = 0;
  } tally;
  for (int i = 0; i < req->items_size(); ++i) {
    const v1::GetManyItem& item = req->items(i);
    v1::GetManyResult* out = reply->mutable_results(i);
    Status ok = core_.store->check(item.key(), 0);
    if (ok.is_ok() && in_cluster) ok = admit_read(session->get(), item.key(), item.min_version());
    if (!ok.is_ok()) {
      rpc::to_item(out->mutable_status(), ok);
      continue;
    }
    ++tally.gets;
    auto ref = core_.store->get(item.key());
    if (!ref) {
      ++tally.misses;
      rpc::to_item(out->mutable_status(), in_cluster
                                              ? after_miss(session->get(), item.key(), ref.status())
                                              : ref.status());
      continue;
    }
    const uint64_t len = ref->size();
    out->set_value_len(len);
    if (len <= std::min(inline_limit, core_.options.inline_threshold)) {
      if (inline_bytes + len > std::min(inline_budget, kMaxReplyInline)) {
        --tally.gets;  // not served: the client asks again
        out->set_deferred(true);
        continue;
      }
      ++tally.hits;
      inline_bytes += len;
      out->set_is_inline(true);
      out->set_value(reinterpret_cast<const char*>(ref->data()), len);
      continue;
    }
    ++tally.hits;
    if (len > item.dest_capacity()) continue;  // written=false: reserve value_len and ask again
    auto dest = (*session)->dest_region(item.dest_region());  // caller memory; 0: receive region
    if (!dest) {
      rpc::to_item(out->mutable_status(), dest.status());
      continue;
    }
    const std::shared_ptr<transport::RemoteRegion>& region = *dest;
    uint64_t off = item.dest_offset();
    if (off > region->size() || item.dest_capacity() > region->size() - off) {
      rpc::to_item(out->mutable_status(),
                   Status(Code::kInvalidArgument,
                          fmt::format("destination [{}, +{}) lies outside the {}-byte region {} "
                                      "this session registered",
                                      off, item.dest_capacity(), region->size(),
                                      item.dest_region())));
      continue;
    }
    pending->left.fetch_add(1, std::memory_order_relaxed);
    push_value(std::move(*ref), region, off, deadline, [out, pending, len, &counters](Status s) {
      if (s.is_ok()) {
        out->set_written(true);
        counters.bytes_transport_written += len;
      } else {
        rpc::to_item(out->mutable_status(), s.with_context("transport write"));
      }
      pending->done();
    });
  }
  // Shared counters once per call, not once per key.
  counters.gets += tally.gets;
  counters.get_hits += tally.hits;
  counters.get_misses += tally.misses;
  counters.bytes_inline_sent += inline_bytes;
  pending->done();  // the issuing pass is over; answers now if no write is outstanding
  return std::nullopt;
}

grpc::ServerUnaryReactor* KvService::PutMany(grpc::CallbackServerContext* ctx,
                                             const v1::PutManyRequest* req,
                                             v1::PutManyReply* reply) {
  if (Status denied = authorize(ctx); !denied.is_ok()) return finish(ctx, denied);
  OpTimer timer(core_.metrics, Op::kPutBatch);
  BumpOnReturn changed(core_.changes);
  auto session = core_.sessions->find(req->session_id());
  if (!session) return finish(ctx, session.status());
  Status shape = check_batch("PutMany", req->items(), [](const v1::PutManyItem& i) {
    return i.key().size() + i.value().size();
  });
  if (!shape.is_ok()) return finish(ctx, shape);
  // Cluster mode: the gate is held across the whole batch, from the first check to the last
  // store change (see Put).
  const bool in_cluster = core_.cluster->enabled();
  std::shared_lock<std::shared_mutex> gate;
  if (in_cluster) {
    if (Status f = fenced(); !f.is_ok()) return finish(ctx, f);
    if (core_.replication && core_.cluster->map()->replicas > 1) {
      return replicated_put_many(ctx, **session, *req, reply);  // replica_service.cc
    }
    gate = std::shared_lock(core_.cluster->write_gate());
  }
  const bool from_peer = (*session)->peer_node != 0;
  for (const v1::PutManyItem& item : req->items()) {
    v1::ItemStatus* out = reply->add_results();
    if (item.value().size() > core_.options.inline_threshold) {
      rpc::to_item(out, Status(Code::kInvalidArgument,
                               fmt::format("PutMany value of {} bytes is above the inline "
                                           "threshold of {} bytes; store it with "
                                           "PutBegin/PutCommit",
                                           item.value().size(), core_.options.inline_threshold)));
      continue;
    }
    if (in_cluster) {
      if (auto v = admit(session->get(), item.key(), SlotOp::kWrite); !v) {
        rpc::to_item(out, v.status());
        continue;
      }
    }
    Status s = core_.store->put(item.key(), item.value(), milliseconds(req->ttl_ms()));
    if (s.is_ok()) {
      ++(from_peer ? core_.counters.keys_moved_in : core_.counters.puts);
      core_.counters.bytes_inline_received += item.value().size();
    }
    rpc::to_item(out, s);
  }
  return finish(ctx, Status());
}

}  // namespace kvrdma::server
