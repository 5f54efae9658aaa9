// The MetaStore contract over etcd v3's gRPC API (proto/etcd.proto). Unary calls use the sync
// stubs with a deadline of the connect timeout. The lease keepalive is one long-lived
// LeaseKeepAlive stream driven through a completion queue, so each request/response on it is
// bounded by the same timeout (a sync stream read cannot be). wait_for_change opens one Watch
// stream per wait, with the wait's timeout as its deadline; cancel_waits cancels them.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>

#include "cluster/meta_store.h"
#include "common/logging.h"
#include "etcd.grpc.pb.h"

namespace kvrdma::cluster {
namespace {

namespace pb = etcdserverpb;
using Steady = std::chrono::steady_clock;

// gRPC takes deadlines on the system clock; ours are steady, converted at the last moment.
std::chrono::system_clock::time_point to_grpc(Steady::time_point deadline) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - Steady::now());
}

// One endpoint: its channel and stubs. Immutable once built; shared by concurrent calls.
struct Endpoint {
  std::string name;  // as given, for messages
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Watch::Stub> watch;
};

std::shared_ptr<Endpoint> open_endpoint(const std::string& name, const std::string& target) {
  grpc::ChannelArguments args;
  // Reconnect soon after etcd comes back (gRPC's default backoff grows to 120 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  // gRPC also takes this as the deadline of each connection attempt: 100 ms failed attempts to
  // a busy peer before its first SETTINGS frame ("tcp handshaker shutdown").
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  auto e = std::make_shared<Endpoint>();
  e->name = name;
  e->channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  e->kv = pb::KV::NewStub(e->channel);
  e->lease = pb::Lease::NewStub(e->channel);
  e->watch = pb::Watch::NewStub(e->channel);
  return e;
}

// The smallest key above every key that starts with `prefix` ("\0": no upper bound).
std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

MetaEntry to_entry(const pb::KeyValue& kv) {
  return MetaEntry{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.lease()};
}

bool is_transport_failure(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::DEADLINE_EXCEEDED ||
         c == grpc::StatusCode::CANCELLED || c == grpc::StatusCode::UNKNOWN;
}

Status unreachable(std::string_view what, const std::string& endpoint, std::string_view why) {
  return Status(Code::kUnavailable,
                fmt::format("etcd {} at {} failed: {}; is etcd running at {}? check "
                            "--etcd-endpoints",
                            what, endpoint, why, endpoint));
}

Status from_grpc(std::string_view what, const std::string& endpoint, const grpc::Status& s) {
  if (s.ok()) return Status::ok();
  auto why = fmt::format("{} (gRPC code {})", s.error_message(), static_cast<int>(s.error_code()));
  if (is_transport_failure(s.error_code())) return unreachable(what, endpoint, why);
  Code code = s.error_code() == grpc::StatusCode::NOT_FOUND            ? Code::kNotFound
              : s.error_code() == grpc::StatusCode::INVALID_ARGUMENT   ? Code::kInvalidArgument
              : s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ? Code::kResourceExhausted
                                                                       : Code::kInternal;
  return Status(code, fmt::format("etcd {} at {} refused: {}", what, endpoint, why));
}

Status lease_gone(LeaseId lease, const std::string& endpoint) {
  return Status(Code::kNotFound,
                fmt::format("etcd at {} no longer has lease {:x} (expired or revoked); stop acting "
                            "on what it guarded and register again",
                            endpoint, lease));
}

// Thread-safety: any thread. endpoints_ is immutable; current_ is atomic. ka_mu_ serialises the
// keepalive stream (one request/response in flight); wait_mu_ guards the set of open watches.
class EtcdStore final : public MetaStore {
 public:
  EtcdStore(std::vector<std::shared_ptr<Endpoint>> endpoints, size_t current,
            std::chrono::milliseconds timeout)
      : endpoints_(std::move(endpoints)), current_(current), timeout_(timeout) {}

  ~EtcdStore() override {
    cancel_waits();
    std::lock_guard lock(ka_mu_);
    close_keepalive_locked();
    ka_cq_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (ka_cq_.Next(&tag, &ok)) {
    }
  }

  Result<LeaseId> grant_lease(std::chrono::milliseconds ttl) override {
    if (ttl.count() <= 0) {
      return Status(Code::kInvalidArgument,
                    fmt::format("lease TTL {} ms is not positive; pass a TTL above 0",
                                ttl.count()));
    }
    pb::LeaseGrantRequest req;
    req.set_ttl(std::max<int64_t>(1, std::chrono::ceil<std::chrono::seconds>(ttl).count()));
    pb::LeaseGrantResponse resp;
    auto e = endpoint();
    grpc::ClientContext ctx;
    KVRDMA_RETURN_IF_ERROR(finish("LeaseGrant", e, e->lease->LeaseGrant(prepare(ctx), req, &resp)));
    if (!resp.error().empty()) {
      return Status(Code::kInternal,
                    fmt::format("etcd LeaseGrant at {} refused: {}", e->name, resp.error()));
    }
    if (resp.ttl() != req.ttl()) {
      // etcd raises a TTL below its minimum (about 1.5 election timeouts); say what it granted.
      KVRDMA_LOG_INFO("etcd at {} granted lease {:x} a TTL of {} s (asked {} s)", e->name,
                      resp.id(), resp.ttl(), req.ttl());
    }
    return resp.id();
  }

  Status keep_alive(LeaseId lease) override {
    std::lock_guard lock(ka_mu_);
    auto e = endpoint();
    const auto deadline = Steady::now() + timeout_;
    if (ka_rw_ != nullptr && ka_endpoint_ != e) close_keepalive_locked();
    if (ka_rw_ == nullptr) {
      ka_ctx_ = std::make_unique<grpc::ClientContext>();
      ka_endpoint_ = e;
      ka_rw_ = e->lease->AsyncLeaseKeepAlive(ka_ctx_.get(), &ka_cq_, &ka_rw_);
      if (!await_keepalive_locked(deadline)) return keepalive_failed_locked("open the stream");
    }
    pb::LeaseKeepAliveRequest req;
    req.set_id(lease);
    ++requests_;
    ka_rw_->Write(req, &ka_rw_);
    if (!await_keepalive_locked(deadline)) return keepalive_failed_locked("send");
    pb::LeaseKeepAliveResponse resp;
    ka_rw_->Read(&resp, &ka_rw_);
    if (!await_keepalive_locked(deadline)) return keepalive_failed_locked("receive");
    // etcd answers TTL 0 (not an error) for a lease it does not have.
    if (resp.ttl() <= 0) return lease_gone(lease, e->name);
    return Status::ok();
  }

  Status revoke(LeaseId lease) override {
    pb::LeaseRevokeRequest req;
    req.set_id(lease);
    pb::LeaseRevokeResponse resp;
    auto e = endpoint();
    grpc::ClientContext ctx;
    grpc::Status s = e->lease->LeaseRevoke(prepare(ctx), req, &resp);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) return Status::ok();  // already gone
    return finish("LeaseRevoke", e, s);
  }

  Result<bool> create(std::string_view key, std::string_view value, LeaseId lease,
                      MetaEntry* existing) override {
    pb::TxnRequest req;
    auto* cmp = req.add_compare();
    cmp->set_key(std::string(key));
    cmp->set_target(pb::Compare::CREATE);
    cmp->set_result(pb::Compare::EQUAL);
    cmp->set_create_revision(0);  // absent
    set_put(req.add_success()->mutable_request_put(), key, value, lease);
    req.add_failure()->mutable_request_range()->set_key(std::string(key));
    pb::TxnResponse resp;
    KVRDMA_RETURN_IF_ERROR(txn(req, &resp));
    if (resp.succeeded()) return true;
    if (existing != nullptr && resp.responses_size() > 0 &&
        resp.responses(0).response_range().kvs_size() > 0) {
      *existing = to_entry(resp.responses(0).response_range().kvs(0));
    }
    return false;
  }

  Result<bool> compare_and_swap(std::string_view key, int64_t expected_mod_revision,
                                std::string_view value, LeaseId lease) override {
    pb::TxnRequest req;
    auto* cmp = req.add_compare();
    cmp->set_key(std::string(key));
    cmp->set_target(pb::Compare::MOD);
    cmp->set_result(pb::Compare::EQUAL);
    cmp->set_mod_revision(expected_mod_revision);  // etcd compares an absent key as 0
    set_put(req.add_success()->mutable_request_put(), key, value, lease);
    pb::TxnResponse resp;
    KVRDMA_RETURN_IF_ERROR(txn(req, &resp));
    return resp.succeeded();
  }

  Status put(std::string_view key, std::string_view value, LeaseId lease) override {
    pb::PutRequest req;
    set_put(&req, key, value, lease);
    pb::PutResponse resp;
    auto e = endpoint();
    grpc::ClientContext ctx;
    return finish("Put", e, e->kv->Put(prepare(ctx), req, &resp));
  }

  Status erase(std::string_view key) override {
    pb::DeleteRangeRequest req;
    req.set_key(std::string(key));
    pb::DeleteRangeResponse resp;
    auto e = endpoint();
    grpc::ClientContext ctx;
    return finish("DeleteRange", e, e->kv->DeleteRange(prepare(ctx), req, &resp));
  }

  Result<MetaRange> range(std::string_view prefix) override {
    pb::RangeRequest req;
    req.set_key(std::string(prefix));
    req.set_range_end(prefix_end(prefix));
    pb::RangeResponse resp;
    auto e = endpoint();
    grpc::ClientContext ctx;
    KVRDMA_RETURN_IF_ERROR(finish("Range", e, e->kv->Range(prepare(ctx), req, &resp)));
    MetaRange out;
    out.revision = resp.header().revision();
    out.entries.reserve(resp.kvs_size());
    for (const auto& kv : resp.kvs()) out.entries.push_back(to_entry(kv));
    std::sort(out.entries.begin(), out.entries.end(),
              [](const MetaEntry& a, const MetaEntry& b) { return a.key < b.key; });
    return out;
  }

  Result<int64_t> wait_for_change(std::string_view prefix, int64_t after_revision,
                                  std::chrono::milliseconds timeout) override {
    const auto deadline = Steady::now() + timeout;
    auto ctx = std::make_shared<grpc::ClientContext>();
    ctx->set_deadline(to_grpc(deadline));
    ctx->set_wait_for_ready(true);  // a reconnecting channel is waited for, up to the deadline
    {
      std::lock_guard lock(wait_mu_);
      if (cancelled_) return after_revision;
      waits_.insert(ctx.get());
    }
    auto e = endpoint();
    Result<int64_t> out = watch_once(e, *ctx, prefix, after_revision);
    bool cancelled = false;
    {
      std::lock_guard lock(wait_mu_);
      waits_.erase(ctx.get());
      cancelled = cancelled_;
    }
    if (cancelled) return after_revision;
    if (!out.is_ok()) {
      note_failure(e);
      // Fail no sooner than the deadline, so a caller that simply retries does not spin.
      std::unique_lock lock(wait_mu_);
      wait_cv_.wait_until(lock, deadline, [&] { return cancelled_; });
      if (cancelled_) return after_revision;
    }
    return out;
  }

  void cancel_waits() override {
    std::lock_guard lock(wait_mu_);
    cancelled_ = true;
    for (grpc::ClientContext* c : waits_) c->TryCancel();
    wait_cv_.notify_all();
  }

  uint64_t requests() const override { return requests_.load(); }

  std::string describe() const override { return "etcd " + endpoint()->name; }

 private:
  std::shared_ptr<Endpoint> endpoint() const {
    return endpoints_[current_.load() % endpoints_.size()];
  }

  // A transport failure on `e` moves later calls to the next endpoint (when there is one).
  void note_failure(const std::shared_ptr<Endpoint>& e) {
    size_t cur = current_.load();
    if (endpoints_.size() > 1 && endpoints_[cur % endpoints_.size()] == e) {
      current_.compare_exchange_strong(cur, cur + 1);
    }
  }

  grpc::ClientContext* prepare(grpc::ClientContext& ctx) {
    ++requests_;
    ctx.set_deadline(to_grpc(Steady::now() + timeout_));
    return &ctx;
  }

  Status finish(std::string_view what, const std::shared_ptr<Endpoint>& e, const grpc::Status& s) {
    if (!s.ok() && is_transport_failure(s.error_code())) note_failure(e);
    return from_grpc(what, e->name, s);
  }

  Status txn(const pb::TxnRequest& req, pb::TxnResponse* resp) {
    auto e = endpoint();
    grpc::ClientContext ctx;
    return finish("Txn", e, e->kv->Txn(prepare(ctx), req, resp));
  }

  static void set_put(pb::PutRequest* put, std::string_view key, std::string_view value,
                      LeaseId lease) {
    put->set_key(std::string(key));
    put->set_value(std::string(value));
    put->set_lease(lease);
  }

  // One Watch stream: create it from after_revision + 1, return at the first event, at a
  // compaction (the current revision: the caller re-reads), or at the deadline (after_revision).
  Result<int64_t> watch_once(const std::shared_ptr<Endpoint>& e, grpc::ClientContext& ctx,
                             std::string_view prefix, int64_t after_revision) {
    auto stream = e->watch->Watch(&ctx);
    pb::WatchRequest req;
    auto* create = req.mutable_create_request();
    create->set_key(std::string(prefix));
    create->set_range_end(prefix_end(prefix));
    create->set_start_revision(after_revision + 1);
    ++requests_;
    bool created = false;
    bool compacted = false;
    std::optional<int64_t> seen;
    if (stream->Write(req)) {
      pb::WatchResponse resp;
      while (!seen && stream->Read(&resp)) {
        created = created || resp.created();
        if (resp.compact_revision() > 0 || resp.canceled()) {
          compacted = true;
          break;
        }
        for (const auto& ev : resp.events()) {
          seen = std::max(seen.value_or(after_revision), ev.kv().mod_revision());
        }
      }
    }
    if (seen || compacted) ctx.TryCancel();  // done: end the stream, not wait for its deadline
    grpc::Status s = stream->Finish();
    if (seen) return *seen;
    if (compacted) return current_revision(e, after_revision);
    if (created && s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) return after_revision;
    if (s.ok()) {
      return unreachable("Watch", e->name, "the stream ended without an event");
    }
    return from_grpc("Watch", e->name, s);
  }

  // The store's revision now (the header of a count-only Range), but above after_revision, so a
  // waiter whose history was compacted away re-reads. The cancel response's own header cannot
  // be trusted for this.
  Result<int64_t> current_revision(const std::shared_ptr<Endpoint>& e, int64_t after_revision) {
    pb::RangeRequest req;
    req.set_key("/");
    req.set_count_only(true);
    pb::RangeResponse resp;
    grpc::ClientContext ctx;
    KVRDMA_RETURN_IF_ERROR(finish("Range", e, e->kv->Range(prepare(ctx), req, &resp)));
    return std::max(resp.header().revision(), after_revision + 1);
  }

  // Waits for the one operation in flight on the keepalive stream; false on failure or timeout
  // (then the stream is cancelled and its operation drained, so the queue is idle again).
  bool await_keepalive_locked(Steady::time_point deadline) {
    void* tag = nullptr;
    bool ok = false;
    auto st = ka_cq_.AsyncNext(&tag, &ok, to_grpc(deadline));
    if (st == grpc::CompletionQueue::GOT_EVENT) return ok;
    if (st == grpc::CompletionQueue::TIMEOUT) {
      ka_ctx_->TryCancel();
      ka_timed_out_ = true;
      ka_cq_.Next(&tag, &ok);  // a cancelled call completes its pending operation promptly
    }
    return false;
  }

  Status keepalive_failed_locked(std::string_view step) {
    bool timed_out = ka_timed_out_;
    grpc::Status s = close_keepalive_locked();
    std::string why = timed_out ? fmt::format("no reply within {} ms", timeout_.count())
                                : fmt::format("{} (gRPC code {})", s.error_message(),
                                              static_cast<int>(s.error_code()));
    auto e = endpoint();
    note_failure(e);
    if (!timed_out && !is_transport_failure(s.error_code()) && !s.ok()) {
      return from_grpc("LeaseKeepAlive", e->name, s);
    }
    return unreachable(fmt::format("LeaseKeepAlive ({})", step), e->name, why);
  }

  // Ends the keepalive stream (if open) and returns its final status.
  grpc::Status close_keepalive_locked() {
    grpc::Status s;
    if (ka_rw_ != nullptr) {
      ka_ctx_->TryCancel();
      ka_rw_->Finish(&s, &ka_rw_);
      void* tag = nullptr;
      bool ok = false;
      ka_cq_.Next(&tag, &ok);
    }
    ka_rw_.reset();
    ka_ctx_.reset();
    ka_endpoint_.reset();
    ka_timed_out_ = false;
    return s;
  }

  const std::vector<std::shared_ptr<Endpoint>> endpoints_;
  std::atomic<size_t> current_;
  const std::chrono::milliseconds timeout_;
  std::atomic<uint64_t> requests_{0};

  std::mutex ka_mu_;
  grpc::CompletionQueue ka_cq_;
  std::unique_ptr<grpc::ClientContext> ka_ctx_;  // guarded by ka_mu_
  std::unique_ptr<grpc::ClientAsyncReaderWriter<pb::LeaseKeepAliveRequest,
                                                pb::LeaseKeepAliveResponse>>
      ka_rw_;                              // guarded by ka_mu_
  std::shared_ptr<Endpoint> ka_endpoint_;  // guarded by ka_mu_
  bool ka_timed_out_ = false;              // guarded by ka_mu_

  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  std::set<grpc::ClientContext*> waits_;  // guarded by wait_mu_
  bool cancelled_ = false;                // guarded by wait_mu_
};

}  // namespace

Result<std::unique_ptr<MetaStore>> connect_etcd(const std::vector<std::string>& endpoints,
                                                std::chrono::milliseconds timeout) {
  if (endpoints.empty()) {
    return Status(Code::kInvalidArgument,
                  "no etcd endpoint given; pass --etcd-endpoints http://host:port[,...]");
  }
  std::vector<std::shared_ptr<Endpoint>> opened;
  for (const auto& name : endpoints) {
    std::string_view target = name;
    if (target.starts_with("https://")) {
      return Status(Code::kInvalidArgument,
                    fmt::format("etcd endpoint {} uses TLS, which kvrdma does not support; use an "
                                "http:// endpoint in --etcd-endpoints",
                                name));
    }
    if (target.starts_with("http://")) target.remove_prefix(7);
    while (target.ends_with('/')) target.remove_suffix(1);
    if (target.empty()) {
      return Status(Code::kInvalidArgument,
                    fmt::format("etcd endpoint '{}' has no host:port; fix --etcd-endpoints", name));
    }
    opened.push_back(open_endpoint(name, std::string(target)));
  }
  // The first endpoint that answers a Range within the timeout serves; the rest are fallbacks.
  const auto deadline = Steady::now() + timeout;
  std::string errors;
  for (size_t i = 0; i < opened.size(); ++i) {
    pb::RangeRequest req;
    req.set_key("/kvrdma/");
    req.set_limit(1);
    req.set_keys_only(true);
    pb::RangeResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(to_grpc(deadline));
    grpc::Status s = opened[i]->kv->Range(&ctx, req, &resp);
    if (s.ok()) {
      return std::unique_ptr<MetaStore>(std::make_unique<EtcdStore>(opened, i, timeout));
    }
    errors +=
        fmt::format("{}{}: {}", errors.empty() ? "" : "; ", opened[i]->name, s.error_message());
  }
  std::string names;
  for (const auto& n : endpoints) names += (names.empty() ? "" : ", ") + n;
  return Status(Code::kUnavailable,
                fmt::format("cannot reach etcd at {} within {} ms ({}); is etcd running there? "
                            "check --etcd-endpoints",
                            names, timeout.count(), errors));
}

}  // namespace kvrdma::cluster
