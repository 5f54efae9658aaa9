// NodeSession's caller-memory path (README.md "Caller memory"): GETs whose values the server
// writes straight into memory the application registered or allocated, and PUTs whose transport
// writes read straight from it. Kept out of node_session.cc; see node_session.h.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>

#include "client/call_versions.h"
#include "client/node_session.h"
#include "common/logging.h"
#include "rpc/status_map.h"

namespace kvrdma::client {
namespace {

// Requests of one GetMany call stay well inside the server's per-call limits (4096 items, 3 MiB).
constexpr size_t kItemsPerCall = 4096;
constexpr uint64_t kKeyBytesPerCall = 2ull << 20;

Status status_of(const Status& s) { return s; }
template <class T>
Status status_of(const Result<T>& r) {
  return r ? Status() : r.status();
}

Status too_small(uint64_t value_len, uint64_t capacity) {
  return Status(Code::kFailedPrecondition,
                fmt::format("the value is {} bytes but the destination holds {}; give at least "
                            "{} bytes (nothing was written)",
                            value_len, capacity, value_len));
}

// An inline value copied into its spot, when it fits.
Result<uint64_t> land_inline(const MemGet& item, const std::string& value) {
  if (item.value_len != nullptr) *item.value_len = value.size();
  if (value.size() > item.capacity) return too_small(value.size(), item.capacity);
  if (!value.empty())
    std::memcpy(item.mem->region->data() + item.offset, value.data(), value.size());
  return value.size();
}

// Items of a batch the server refused because it lost the session are re-run once, those only,
// on a re-opened session: the refusal proves they were not executed.
template <class Item, class R, class Reopen, class Run>
void redo_lost(std::span<const Item> items, std::vector<R>& results, Reopen reopen, Run run) {
  std::vector<size_t> lost;
  for (size_t i = 0; i < results.size(); ++i) {
    if (session_gone(status_of(results[i]))) lost.push_back(i);
  }
  if (lost.empty()) return;
  if (Status s = reopen(); !s.is_ok()) {
    Status failed = s.with_context("the server lost this client's session; re-opening it failed");
    for (size_t i : lost) results[i] = failed;
    return;
  }
  std::vector<Item> again;
  again.reserve(lost.size());
  for (size_t i : lost) again.push_back(items[i]);
  auto redone = run(std::span<const Item>(again));
  for (size_t j = 0; j < lost.size(); ++j) results[lost[j]] = std::move(redone[j]);
}

// Runs `n` unary calls at once over gRPC's callback API and waits for every answer: start(j,
// ctx, done) sets ctx's deadline and starts call j, which ends by calling done. Each call is
// bounded by its context's deadline, so the wait is too.
template <class Start>
std::vector<grpc::Status> call_all(size_t n, Start start) {
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;  // guarded by mu
  } w;
  w.left = n;
  std::vector<grpc::Status> out(n);
  std::unique_ptr<grpc::ClientContext[]> ctxs(new grpc::ClientContext[n]);
  for (size_t j = 0; j < n; ++j) {
    start(j, ctxs[j], [&w, &out, j](grpc::Status s) {
      std::lock_guard lock(w.mu);
      out[j] = std::move(s);
      if (--w.left == 0) w.cv.notify_all();
    });
  }
  std::unique_lock lock(w.mu);
  w.cv.wait(lock, [&] { return w.left == 0; });
  return out;
}

}  // namespace

template <class Op>
auto NodeSession::with_session_mem(Op op)
    -> decltype(op(std::declval<const SessionState&>(), Steady::now())) {
  auto d = deadline();
  if (Status s = ensure_open(d); !s.is_ok()) return s;
  auto st = current();
  auto r = op(*st, d);
  if (!session_gone(status_of(r))) return r;
  if (Status s = reopen(*st, d); !s.is_ok()) {
    return s.with_context("the server lost this client's session; re-opening it failed");
  }
  return op(*current(), d);
}

Result<uint64_t> NodeSession::region_id(MemoryHandle::State& mem, const SessionState& st,
                                        Steady::time_point d) {
  // Held across the RPC: one announcement per region and node, however many threads ask.
  std::lock_guard lock(mem.mu);
  RegionRegistration& reg = mem.registrations[this];
  if (reg.region_id != 0 && reg.session_id == st.hello.session_id()) return reg.region_id;
  v1::RegisterRegionRequest req;
  req.set_session_id(st.hello.session_id());
  req.set_memory_descriptor(mem.region->descriptor());
  req.set_region_size(mem.region->size());
  v1::RegisterRegionReply reply;
  grpc::ClientContext ctx;
  set_deadline(ctx, d);
  grpc::Status s = stub_->RegisterRegion(&ctx, req, &reply);
  if (!s.ok()) return call_failed(s, "RegisterRegion").with_context("announcing caller memory");
  reg.session = weak_from_this();
  reg.session_id = st.hello.session_id();
  reg.region_id = reply.region_id();
  return reg.region_id;
}

void NodeSession::release_region(uint64_t session_id, uint64_t region_id) {
  auto st = current();
  if (!st || st->hello.session_id() != session_id) return;  // that session is gone already
  v1::ReleaseRegionRequest req;
  req.set_session_id(session_id);
  req.set_region_id(region_id);
  v1::ReleaseRegionReply reply;
  grpc::ClientContext ctx;
  set_deadline(ctx, Steady::now() + std::chrono::seconds(1));
  grpc::Status s = stub_->ReleaseRegion(&ctx, req, &reply);
  if (!s.ok()) KVRDMA_LOG_DEBUG("ReleaseRegion at {} failed: {}", target_, s.error_message());
}

Result<uint64_t> NodeSession::get_into(const MemGet& item, uint64_t epoch) {
  return with_session_mem([&](const SessionState& st, Steady::time_point d) {
    return get_into_once(st, item, epoch, d);
  });
}

Result<uint64_t> NodeSession::get_into_once(const SessionState& st, const MemGet& item,
                                            uint64_t epoch, Steady::time_point d) {
  auto id = region_id(*item.mem, st, d);
  if (!id) return id.status();
  v1::GetRequest req;
  req.set_session_id(st.hello.session_id());
  req.set_key(std::string(item.key));
  req.set_map_epoch(epoch);
  req.set_dest_region(*id);
  req.set_dest_offset(item.offset);
  req.set_dest_capacity(item.capacity);
  req.set_min_version(call_versions().min_version);
  // The server may write into the caller's memory from the moment the request leaves.
  transport::WriteExpectation incoming = transport_->expect_writes();
  v1::GetReply reply;
  if (Status s = get_round_trip(req, &reply, d); !s.is_ok()) return s;
  if (reply.is_inline()) return land_inline(item, reply.value());
  if (item.value_len != nullptr) *item.value_len = reply.value_len();
  if (reply.written()) return reply.value_len();
  return too_small(reply.value_len(), item.capacity);
}

std::vector<Result<uint64_t>> NodeSession::get_many_into(std::span<const MemGet> items,
                                                         uint64_t epoch) {
  auto d = deadline();
  if (Status s = ensure_open(d); !s.is_ok()) return std::vector<Result<uint64_t>>(items.size(), s);
  auto st = current();
  auto results = get_many_into_once(*st, items, epoch, d);
  redo_lost(
      items, results, [&] { return reopen(*st, deadline()); },
      [&](std::span<const MemGet> i) {
        return get_many_into_once(*current(), i, epoch, deadline());
      });
  return results;
}

// One GetMany per slice of the batch (every slice's writes in flight at once at the server);
// items the server deferred (its reply's inline space ran out) are asked again.
std::vector<Result<uint64_t>> NodeSession::get_many_into_once(const SessionState& st,
                                                              std::span<const MemGet> items,
                                                              uint64_t epoch,
                                                              Steady::time_point d) {
  std::vector<Result<uint64_t>> results(items.size(), Status(Code::kInternal, "not sent"));
  std::vector<uint64_t> ids(items.size());
  std::vector<size_t> todo;
  for (size_t i = 0; i < items.size(); ++i) {
    auto id = region_id(*items[i].mem, st, d);
    if (!id) {
      results[i] = id.status();
    } else {
      ids[i] = *id;
      todo.push_back(i);
    }
  }
  transport::WriteExpectation incoming;
  if (!todo.empty()) incoming = transport_->expect_writes();
  // Bounded: each round answers or defers every item sent; a deferral needs a reply full of
  // other inline values, so the rounds are at most items / (2 MiB / threshold) + 1.
  for (size_t round = 0; !todo.empty() && round <= items.size(); ++round) {
    std::vector<size_t> again;
    for (size_t start = 0; start < todo.size();) {
      v1::GetManyRequest req;
      req.set_session_id(st.hello.session_id());
      req.set_map_epoch(epoch);
      uint64_t key_bytes = 0;
      size_t end = start;
      for (; end < todo.size() && end - start < kItemsPerCall; ++end) {
        const MemGet& it = items[todo[end]];
        if (end > start && key_bytes + it.key.size() > kKeyBytesPerCall) break;
        key_bytes += it.key.size();
        v1::GetManyItem* out = req.add_items();
        out->set_key(std::string(it.key));
        out->set_dest_region(ids[todo[end]]);
        out->set_dest_offset(it.offset);
        out->set_dest_capacity(it.capacity);
        out->set_min_version(call_versions().min_version_of(it.key));
      }
      v1::GetManyReply reply;
      grpc::ClientContext ctx;
      set_deadline(ctx, d);
      grpc::Status gs = stub_->GetMany(&ctx, req, &reply);
      Status call = gs.ok() ? Status() : call_failed(gs, "GetMany");
      if (call.is_ok() && reply.results_size() != static_cast<int>(end - start)) {
        call = Status(Code::kInternal, fmt::format("GetMany at {} answered {} results for {} items",
                                                   target_, reply.results_size(), end - start));
      }
      for (size_t j = start; j < end; ++j) {
        const size_t i = todo[j];
        if (!call.is_ok()) {
          results[i] = call;
          continue;
        }
        const v1::GetManyResult& r = reply.results(static_cast<int>(j - start));
        if (Status s = rpc::from_item(r.status()); !s.is_ok()) {
          results[i] = s;
        } else if (r.deferred()) {
          again.push_back(i);
        } else if (r.is_inline()) {
          results[i] = land_inline(items[i], r.value());
        } else {
          if (items[i].value_len != nullptr) *items[i].value_len = r.value_len();
          results[i] = r.written() ? Result<uint64_t>(r.value_len())
                                   : Result<uint64_t>(too_small(r.value_len(), items[i].capacity));
        }
      }
      start = end;
    }
    todo = std::move(again);
  }
  return results;
}

Status NodeSession::put_from(const MemPut& item, uint64_t ttl_ms, uint64_t epoch) {
  return with_session_mem([&](const SessionState& st, Steady::time_point d) {
    std::vector<Status> r =
        put_many_from_once(st, std::span<const MemPut>(&item, 1), ttl_ms, epoch, d);
    return r.front();
  });
}

std::vector<Status> NodeSession::put_many_from(std::span<const MemPut> items, uint64_t ttl_ms,
                                               uint64_t epoch) {
  auto d = deadline();
  if (Status s = ensure_open(d); !s.is_ok()) return std::vector<Status>(items.size(), s);
  auto st = current();
  auto results = put_many_from_once(*st, items, ttl_ms, epoch, d);
  redo_lost(
      items, results, [&] { return reopen(*st, deadline()); },
      [&](std::span<const MemPut> i) {
        return put_many_from_once(*current(), i, ttl_ms, epoch, deadline());
      });
  return results;
}

// Small values travel inline together (PutMany); large ones are reserved (one PutBegin each, all
// in flight at once), then every transport write is issued at once straight from the caller's
// memory, then each is committed (or aborted when its write failed), again all at once.
std::vector<Status> NodeSession::put_many_from_once(const SessionState& st,
                                                    std::span<const MemPut> items, uint64_t ttl_ms,
                                                    uint64_t epoch, Steady::time_point d) {
  std::vector<Status> results(items.size());
  const v1::HelloReply& hello = st.hello;
  std::vector<KeyValue> small;
  std::vector<size_t> small_at, large_at;
  for (size_t i = 0; i < items.size(); ++i) {
    const MemPut& it = items[i];
    if (it.len > hello.max_value_bytes()) {
      results[i] = Status(Code::kInvalidArgument,
                          fmt::format("value of {} bytes exceeds the server's maximum of {} "
                                      "bytes; raise --max-value-mb on the server or split the "
                                      "value",
                                      it.len, hello.max_value_bytes()));
    } else if (it.len <= hello.inline_threshold()) {
      const char* p = reinterpret_cast<const char*>(it.mem->region->data()) + it.offset;
      small.push_back(KeyValue{it.key, std::string_view(p, it.len)});
      small_at.push_back(i);
    } else {
      large_at.push_back(i);
    }
  }
  if (!small.empty()) {
    auto r = client::put_many(batch_channel(st, epoch), small, ttl_ms);
    for (size_t j = 0; j < small_at.size(); ++j) results[small_at[j]] = std::move(r[j]);
  }
  // Reserve.
  std::vector<v1::PutBeginRequest> begins(large_at.size());
  std::vector<v1::PutBeginReply> reserved(large_at.size());
  for (size_t j = 0; j < large_at.size(); ++j) {
    const MemPut& it = items[large_at[j]];
    begins[j].set_session_id(hello.session_id());
    begins[j].set_key(std::string(it.key));
    begins[j].set_value_len(it.len);
    begins[j].set_ttl_ms(ttl_ms);
    begins[j].set_map_epoch(epoch);
  }
  std::vector<grpc::Status> began =
      call_all(large_at.size(), [&](size_t j, grpc::ClientContext& ctx, auto done) {
        set_deadline(ctx, d);
        stub_->async()->PutBegin(&ctx, &begins[j], &reserved[j], std::move(done));
      });
  std::vector<bool> begun(large_at.size(), false);
  for (size_t j = 0; j < large_at.size(); ++j) {
    begun[j] = began[j].ok();
    if (!begun[j]) results[large_at[j]] = call_failed(began[j], "PutBegin");
  }
  // Write, all at once.
  struct Writes {
    std::mutex mu;
    std::vector<Status> status;
    size_t left = 0;
    std::promise<void> all;
  };
  auto w = std::make_shared<Writes>();
  w->status.resize(large_at.size());
  w->left = static_cast<size_t>(std::count(begun.begin(), begun.end(), true)) + 1;
  auto one_done = [w] {
    std::lock_guard lock(w->mu);
    if (--w->left == 0) w->all.set_value();
  };
  for (size_t j = 0; j < large_at.size(); ++j) {
    if (!begun[j]) continue;
    const MemPut& it = items[large_at[j]];
    transport_->write(*it.mem->region, it.offset, st.server_pool, reserved[j].remote_offset(),
                      it.len, d, [w, j, one_done](Status s) {
                        {
                          std::lock_guard lock(w->mu);
                          w->status[j] = std::move(s);
                        }
                        one_done();
                      });
  }
  one_done();  // the issuing pass is over
  w->all.get_future().wait();
  // Commit or abort, all at once. A failed write's reservation is aborted within a fresh
  // deadline, so it is freed even when the write used the whole of this call's.
  std::vector<size_t> ends;  // indices into large_at of the begun ones
  for (size_t j = 0; j < large_at.size(); ++j) {
    if (begun[j]) ends.push_back(j);
  }
  std::vector<v1::PutCommitRequest> commits(ends.size());
  std::vector<v1::PutAbortRequest> aborts(ends.size());
  std::vector<v1::PutCommitReply> committed(ends.size());
  std::vector<v1::PutAbortReply> aborted(ends.size());
  std::vector<Status> wrote(ends.size());
  {
    std::lock_guard lock(w->mu);
    for (size_t e = 0; e < ends.size(); ++e) wrote[e] = w->status[ends[e]];
  }
  const auto abort_by = deadline();
  std::vector<grpc::Status> ended =
      call_all(ends.size(), [&](size_t e, grpc::ClientContext& ctx, auto done) {
        const uint64_t reservation = reserved[ends[e]].reservation_id();
        if (wrote[e].is_ok()) {
          set_deadline(ctx, d);
          commits[e].set_session_id(hello.session_id());
          commits[e].set_reservation_id(reservation);
          stub_->async()->PutCommit(&ctx, &commits[e], &committed[e], std::move(done));
        } else {
          set_deadline(ctx, abort_by);
          aborts[e].set_session_id(hello.session_id());
          aborts[e].set_reservation_id(reservation);
          stub_->async()->PutAbort(&ctx, &aborts[e], &aborted[e], std::move(done));
        }
      });
  for (size_t e = 0; e < ends.size(); ++e) {
    const size_t i = large_at[ends[e]];
    if (!wrote[e].is_ok()) {
      results[i] = wrote[e].with_context(
          "writing the value from caller memory into the "
          "server's pool");
    } else if (!ended[e].ok()) {
      results[i] = call_failed(ended[e], "PutCommit");
    }
  }
  return results;
}

}  // namespace kvrdma::client
