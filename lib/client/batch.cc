#include "client/batch.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <cstring>
#include <deque>

#include "client/call_versions.h"
#include "rpc/security.h"
#include "rpc/status_map.h"

namespace kvrdma::client {
namespace {

using Steady = std::chrono::steady_clock;

// Per call, below the server's limits (4096 items, 3 MiB of request bytes) so no call is refused.
constexpr size_t kItemsPerCall = 1024;
constexpr uint64_t kBytesPerCall = 2ull << 20;
// A key is asked again when its value changed size or the reply was full; bounded per key.
constexpr int kMaxAttempts = 8;

Status call_failed(const BatchChannel& ch, const grpc::Status& s, std::string_view what) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return rpc::from_grpc(s, fmt::format("{} at kv-server {}", what, ch.target));
  }
  return rpc::from_grpc(s);
}

void set_deadline(const BatchChannel& ch, grpc::ClientContext& ctx, Steady::time_point d) {
  ctx.set_deadline(std::chrono::system_clock::now() + (d - Steady::now()));
  rpc::add_token(ctx, ch.auth_token);
}

ValueView owned_view(std::string bytes) {
  auto owner = std::make_shared<std::string>(std::move(bytes));
  const auto* data = reinterpret_cast<const std::byte*>(owner->data());
  size_t n = owner->size();
  return ValueView(std::move(owner), data, n, false);
}

// Copies every result still in the receive buffer to the heap, giving its space back. True when
// some space was freed. Used only when the rest of the batch cannot otherwise fit.
bool spill_to_heap(std::vector<Result<ValueView>>& results) {
  bool freed = false;
  for (auto& r : results) {
    if (r.is_ok() && r->in_receive_buffer()) {
      r = owned_view(std::string(r->str()));
      freed = true;
    }
  }
  return freed;
}

// One GetMany: on a free stream when there is one, else as a unary call.
Status round_trip(const BatchChannel& ch, const v1::GetManyRequest& req, v1::GetManyReply* reply,
                  Steady::time_point d) {
  if (ch.streams != nullptr) {
    auto r = GetStreams::settle(ch.streams->get_many(req, reply, d), "GetMany", ch.target);
    if (r) return *r;
    reply->Clear();  // every stream busy, or the server has none
  }
  grpc::ClientContext ctx;
  set_deadline(ch, ctx, d);
  grpc::Status s = ch.stub->GetMany(&ctx, req, reply);
  return s.ok() ? Status() : call_failed(ch, s, "GetMany");
}

struct Want {
  size_t index = 0;
  uint64_t need = 0;  // 0: not known yet, ask for inline values only
  int attempts = 0;
  memory::Allocation extent;
};

}  // namespace

std::vector<Result<ValueView>> get_many(const BatchChannel& ch,
                                        std::span<const std::string_view> keys) {
  std::vector<Result<ValueView>> results;
  results.reserve(keys.size());
  std::deque<Want> queue;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].empty()) {
      results.emplace_back(Status(Code::kInvalidArgument, "key is empty; give a non-empty key"));
    } else {
      results.emplace_back(Status(Code::kInternal, "not served"));  // short: no allocation
      queue.emplace_back();
      queue.back().index = i;
    }
  }
  const auto d = Steady::now() + ch.timeout;
  memory::MemoryPool& pool = *ch.buffer->pool;
  // The server may write values into our buffer from the moment a request offering space
  // leaves. Taken only then: keys of unknown size are asked inline-only first, and a live
  // expectation makes libfabric's progress thread poll eagerly.
  transport::WriteExpectation incoming;
  while (!queue.empty()) {
    // Build one call from the front of the queue, reserving space for values of known size.
    std::vector<Want> call;
    uint64_t bytes = 0;
    while (!queue.empty() && call.size() < kItemsPerCall) {
      Want& w = queue.front();
      const std::string_view key = keys[w.index];
      if (!call.empty() && bytes + key.size() > kBytesPerCall) break;
      if (w.need > 0 && !w.extent.valid()) {
        if (w.need > pool.size()) {
          results[w.index] =
              Status(Code::kFailedPrecondition,
                     fmt::format("value of {} bytes does not fit the {}-byte receive buffer; raise "
                                 "--buffer-mb to at least {}",
                                 w.need, pool.size(), (w.need + (1 << 20) - 1) >> 20));
          queue.pop_front();
          continue;
        }
        auto a = pool.allocate(w.need);
        if (!a && !call.empty()) break;  // send what fits; this key goes in a later call
        if (!a && spill_to_heap(results)) continue;
        if (!a) a = pool.allocate_until(w.need, d);  // space held by other views only
        if (!a) {
          results[w.index] = a.status().with_context(
              fmt::format("waiting for {} bytes of receive buffer", w.need));
          queue.pop_front();
          continue;
        }
        w.extent = std::move(*a);
      }
      bytes += key.size();
      call.push_back(std::move(w));
      queue.pop_front();
    }
    if (call.empty()) continue;

    v1::GetManyRequest req;
    req.set_session_id(ch.session_id);
    req.set_map_epoch(ch.map_epoch);
    for (const Want& w : call) {
      if (w.extent.valid() && !incoming) incoming = ch.buffer->transport->expect_writes();
      v1::GetManyItem* item = req.add_items();
      item->set_key(keys[w.index].data(), keys[w.index].size());
      item->set_dest_offset(w.extent.valid() ? w.extent.offset() : 0);
      item->set_dest_capacity(w.extent.valid() ? w.extent.capacity() : 0);
      item->set_min_version(call_versions().min_version_of(keys[w.index]));  // replicas
    }
    // Inline values stay in the reply: every view of this call shares it as its owner, so a
    // batch of small values costs no allocation per key.
    auto owner = std::make_shared<v1::GetManyReply>();
    v1::GetManyReply& reply = *owner;
    Status failed = round_trip(ch, req, &reply, d);
    if (failed.is_ok() && reply.results_size() != static_cast<int>(call.size())) {
      failed = Status(Code::kInternal, fmt::format("GetMany answered {} results for {} keys",
                                                   reply.results_size(), call.size()));
    }
    if (!failed.is_ok()) {
      for (Want& w : call) {
        results[w.index] = failed;
        if (w.extent.valid() && write_may_still_land(failed)) {
          ch.buffer->retire(std::move(w.extent));
        }
      }
      continue;  // later calls fail fast the same way when the server is gone
    }
    for (size_t j = 0; j < call.size(); ++j) {
      Want& w = call[j];
      v1::GetManyResult& r = *reply.mutable_results(static_cast<int>(j));
      Status st = rpc::from_item(r.status());
      if (!st.is_ok()) {
        if (w.extent.valid() && write_may_still_land(st)) ch.buffer->retire(std::move(w.extent));
        results[w.index] = st;
      } else if (r.is_inline()) {
        const std::string& v = r.value();
        results[w.index] = ValueView(std::shared_ptr<void>(owner, &r),
                                     reinterpret_cast<const std::byte*>(v.data()), v.size(), false);
      } else if (r.written()) {
        auto held = std::make_shared<HeldExtent>(HeldExtent{ch.buffer, std::move(w.extent)});
        const std::byte* data = held->extent.data();
        results[w.index] = ValueView(std::move(held), data, r.value_len(), true);
      } else if (++w.attempts >= kMaxAttempts) {
        results[w.index] =
            Status(Code::kUnavailable, "the value kept changing size while being read; try again");
      } else {
        // Deferred (reply full) or larger than the space given: ask again with the real size.
        w.extent.reset();
        w.need = r.deferred() ? 0 : r.value_len();
        queue.push_back(std::move(w));
      }
    }
  }
  return results;
}

std::vector<Status> put_many(const BatchChannel& ch, std::span<const KeyValue> items,
                             uint64_t ttl_ms) {
  std::vector<Status> results(items.size());
  std::vector<size_t> small;
  for (size_t i = 0; i < items.size(); ++i) {
    const KeyValue& kv = items[i];
    if (kv.key.empty()) {
      results[i] = Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
    } else if (kv.value.size() > ch.inline_threshold) {
      results[i] = ch.put_one(kv.key, kv.value, ttl_ms);  // checks the size limit, two-phase
    } else {
      small.push_back(i);
    }
  }
  const auto d = Steady::now() + ch.timeout;
  for (size_t pos = 0; pos < small.size();) {
    v1::PutManyRequest req;
    req.set_session_id(ch.session_id);
    req.set_map_epoch(ch.map_epoch);
    req.set_ttl_ms(ttl_ms);
    uint64_t bytes = 0;
    size_t end = pos;
    for (; end < small.size() && end - pos < kItemsPerCall; ++end) {
      const KeyValue& kv = items[small[end]];
      uint64_t n = kv.key.size() + kv.value.size();
      if (end > pos && bytes + n > kBytesPerCall) break;
      bytes += n;
      v1::PutManyItem* item = req.add_items();
      item->set_key(kv.key.data(), kv.key.size());
      item->set_value(kv.value.data(), kv.value.size());
    }
    v1::PutManyReply reply;
    grpc::ClientContext ctx;
    set_deadline(ch, ctx, d);
    grpc::Status s = ch.stub->PutMany(&ctx, req, &reply);
    if (s.ok() && reply.results_size() != static_cast<int>(end - pos)) {
      s = grpc::Status(grpc::StatusCode::INTERNAL,
                       fmt::format("PutMany answered {} results for {} items", reply.results_size(),
                                   end - pos));
    }
    const bool versioned = s.ok() && reply.versions_size() == reply.results_size();
    for (size_t j = pos; j < end; ++j) {
      const int at = static_cast<int>(j - pos);
      results[small[j]] =
          s.ok() ? rpc::from_item(reply.results(at)) : call_failed(ch, s, "PutMany");
      if (versioned && results[small[j]].is_ok() && reply.versions(at) != 0) {
        // Replicas: read your writes (the router raises its per-slot versions from these).
        call_versions().acked_slots.emplace_back(cluster::slot_of(items[small[j]].key),
                                                 reply.versions(at));
      }
    }
    pos = end;
  }
  return results;
}

}  // namespace kvrdma::client
