// KvService: the gRPC service of a kv-server, over the callback API. Handlers never block: a GET
// of a large value starts a transport write and finishes the call from its completion.
// Thread-safe; all shared state lives in ServerCore.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "common/logging.h"
#include "kv_cache.grpc.pb.h"
#include "kvrdma/options.h"
#include "kvrdma/stats.h"
#include "memory/memory_pool.h"
#include "server/change_board.h"
#include "server/cluster_view.h"
#include "server/metrics.h"
#include "server/session.h"
#include "store/store.h"
#include "transport/transport.h"

namespace kvrdma::server {

class Replication;  // replication.h

struct Counters {
  std::atomic<uint64_t> gets{0}, get_hits{0}, get_misses{0}, puts{0}, deletes{0};
  std::atomic<uint64_t> bytes_inline_sent{0}, bytes_transport_written{0};
  std::atomic<uint64_t> bytes_inline_received{0}, bytes_put_committed{0};
  std::atomic<uint64_t> reservations_expired{0}, sessions_expired{0};
  std::atomic<uint64_t> keys_moved_out{0}, keys_moved_in{0};  // cluster mode: slot moves
};

// What the service works on; owned by Server::Impl, declared in destruction order reversed.
// The call's deadline on the steady clock, capped at 60 s so a write never outlives a sane bound
// (a stream has no deadline of its own: it gets the cap).
transport::Transport::Clock::time_point write_deadline(grpc::CallbackServerContext* ctx);

struct ServerCore {
  ServerOptions options;              // inline_threshold resolved (never 0) at start
  uint64_t put_inline_threshold = 0;  // a single PUT's, resolved at start (HelloReply field 9)
  std::unique_ptr<transport::Transport> transport;
  std::unique_ptr<transport::LocalRegion> pool_region;
  std::unique_ptr<memory::MemoryPool> pool;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<SessionTable> sessions;
  Counters counters;
  Metrics metrics;      // latency histograms (server/metrics.h); lock-free
  ChangeBoard changes;  // the state version; Stats calls that wait for it
  // Cluster mode: the map this node serves by (enabled() false outside cluster mode). Created
  // with the core, before the service.
  std::unique_ptr<ClusterView> cluster;
  // Cluster mode: deletes `key` at the slot's next owner (named in `to`), for a DELETE of a key
  // in a slot moving out (docs/cluster.md). Set by the cluster agent before it serves; may block
  // up to `deadline`.
  std::function<Status(std::string_view key, const v1::WrongOwner& to,
                       std::chrono::steady_clock::time_point deadline)>
      forward_delete;
  // Request channel: opens the channel of a session Hello just added from the client's offer,
  // filling the bytes to answer (HelloReply.channel_accept). Set by the server when its channel
  // service runs; empty when the channel is off.
  std::function<Status(std::shared_ptr<Session> session, std::string_view offer,
                       std::string* accept)>
      open_channel;
  // Cluster mode: the write path of replicated slots (docs/cluster.md "Replicas"); set before
  // serving, null outside cluster mode. Shared only so this header needs no complete type.
  std::shared_ptr<Replication> replication;
  // The address clients dial (advertise address, else the bound one); set once listening.
  std::string public_address;

  ServerStats stats() const;
};

class KvService final : public kvrdma::v1::KvCache::CallbackService {
 public:
  explicit KvService(ServerCore& core) : core_(core) {}

  grpc::ServerUnaryReactor* Hello(grpc::CallbackServerContext* ctx, const v1::HelloRequest* req,
                                  v1::HelloReply* reply) override;
  grpc::ServerUnaryReactor* KeepAlive(grpc::CallbackServerContext* ctx,
                                      const v1::KeepAliveRequest* req,
                                      v1::KeepAliveReply* reply) override;
  grpc::ServerUnaryReactor* Goodbye(grpc::CallbackServerContext* ctx, const v1::GoodbyeRequest* req,
                                    v1::GoodbyeReply* reply) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const v1::GetRequest* req,
                                v1::GetReply* reply) override;
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx, const v1::PutRequest* req,
                                v1::PutReply* reply) override;
  grpc::ServerUnaryReactor* PutBegin(grpc::CallbackServerContext* ctx,
                                     const v1::PutBeginRequest* req,
                                     v1::PutBeginReply* reply) override;
  grpc::ServerUnaryReactor* PutCommit(grpc::CallbackServerContext* ctx,
                                      const v1::PutCommitRequest* req,
                                      v1::PutCommitReply* reply) override;
  grpc::ServerUnaryReactor* PutAbort(grpc::CallbackServerContext* ctx,
                                     const v1::PutAbortRequest* req,
                                     v1::PutAbortReply* reply) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx, const v1::DeleteRequest* req,
                                   v1::DeleteReply* reply) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx, const v1::StatsRequest* req,
                                  v1::StatsReply* reply) override;
  // Batch calls, in batch_service.cc.
  grpc::ServerUnaryReactor* GetMany(grpc::CallbackServerContext* ctx, const v1::GetManyRequest* req,
                                    v1::GetManyReply* reply) override;
  grpc::ServerUnaryReactor* PutMany(grpc::CallbackServerContext* ctx, const v1::PutManyRequest* req,
                                    v1::PutManyReply* reply) override;
  // Single and batch GETs over one long-lived stream, in stream_service.cc.
  grpc::ServerBidiReactor<v1::StreamGetRequest, v1::StreamGetReply>* GetStream(
      grpc::CallbackServerContext* ctx) override;
  // Cluster mode, in cluster_service.cc: the map this node serves by, and where a value lives.
  grpc::ServerUnaryReactor* ClusterMap(grpc::CallbackServerContext* ctx,
                                       const v1::ClusterMapRequest* req,
                                       v1::ClusterMapReply* reply) override;
  grpc::ServerUnaryReactor* Locate(grpc::CallbackServerContext* ctx, const v1::LocateRequest* req,
                                   v1::LocateReply* reply) override;

  // Caller memory, in region_service.cc: a session's extra client regions.
  grpc::ServerUnaryReactor* RegisterRegion(grpc::CallbackServerContext* ctx,
                                           const v1::RegisterRegionRequest* req,
                                           v1::RegisterRegionReply* reply) override;
  grpc::ServerUnaryReactor* ReleaseRegion(grpc::CallbackServerContext* ctx,
                                          const v1::ReleaseRegionRequest* req,
                                          v1::ReleaseRegionReply* reply) override;
  grpc::ServerUnaryReactor* DropReplicaSlots(grpc::CallbackServerContext* ctx,
                                             const v1::DropReplicaSlotsRequest* req,
                                             v1::DropReplicaSlotsReply* reply) override;

  // One GET, for Get, GetStream and the request channel (the caller checked the token, or the
  // session is the credential). The outcome when it is known at once (errors, misses, inline
  // values, "ask again with value_len bytes"); nullopt when a transport write started instead:
  // its completion fills `reply` and calls `done` with the outcome, on the transport's thread.
  // `reply` must live until then. Values up to min(inline_limit, --inline-threshold) come
  // inline (the channel's slot is smaller than a gRPC message).
  std::optional<Status> serve_get(const v1::GetRequest& req, v1::GetReply* reply,
                                  transport::Transport::Clock::time_point deadline,
                                  std::function<void(Status)> done,
                                  uint64_t inline_limit = UINT64_MAX);
  // One batch GET, for GetMany and GetStream, on the same terms as serve_get: an error known at
  // once is returned; otherwise nullopt, and `done` runs once every item is answered (possibly
  // before this returns, on this thread, when no transport write was needed).
  // `inline_limit` as in serve_get; inline bytes beyond `inline_budget` in all are deferred.
  std::optional<Status> serve_get_many(const v1::GetManyRequest& req, v1::GetManyReply* reply,
                                       transport::Transport::Clock::time_point deadline,
                                       std::function<void(Status)> done,
                                       uint64_t inline_limit = UINT64_MAX,
                                       uint64_t inline_budget = UINT64_MAX);
  // One small PUT and one DELETE, for Put / Delete and the request channel (same terms). A
  // DELETE in a slot moving out may block up to `deadline` (it deletes at the next owner too).
  Status serve_put(const v1::PutRequest& req);
  Status serve_delete(const v1::DeleteRequest& req, v1::DeleteReply* reply,
                      transport::Transport::Clock::time_point deadline);

  // Cancels every open GetStream and refuses new ones. Server stop calls it before gRPC's
  // shutdown, which would otherwise wait its whole grace period for idle client streams.
  void stop_streams();
  // For the GetStream reactor: registers a stream for its lifetime; false once streams stopped.
  bool add_stream(grpc::CallbackServerContext* ctx);
  void remove_stream(grpc::CallbackServerContext* ctx);

 private:
  // The one check every handler runs first: the token (when the server has one). A new RPC must
  // call it too; security_test calls every method of the service without a token to make sure.
  Status authorize(grpc::CallbackServerContext* ctx) const;
  // Takes one of the session's --max-inflight transfer slots (a GET write or a GetMany call);
  // RESOURCE_EXHAUSTED naming the flag when none is free. The caller gives it back when done.
  Status take_transfer_slot(Session& session) const;
  // Writes the value `ref` pins into `dst` at `offset` (range already checked) and calls `then`
  // with the outcome. The completion owns the only pin and releases it before `then` runs, so
  // no reply built in `then` can reach a client while the value is still pinned (the write may
  // complete inside write(), as the mock transport's does).
  void push_value(store::ValueRef ref, std::shared_ptr<transport::RemoteRegion> dst,
                  uint64_t offset, transport::Transport::Clock::time_point deadline,
                  transport::Completion then);

  // Cluster mode (docs/cluster.md "Serving by the map"); call only when core_.cluster->enabled(),
  // so the single-node path pays one branch and nothing else.
  // UNAVAILABLE once this node lost its cluster lease (declared dead: it serves no data).
  Status fenced() const;
  // The verdict for a data request on `key` over `session` (nullptr: a call without one, e.g.
  // Locate): the refusal (FAILED_PRECONDITION with the typed wrong-owner detail) when this node
  // must not serve it, else the verdict (kServe or kServeMovingOut).
  Result<SlotVerdict> admit(const Session* session, std::string_view key, SlotOp op) const;
  // admit() for a GET: also lets a replica serve when it holds `min_version` of the slot
  // (docs/cluster.md "Replicas"), else redirects to the primary.
  Status admit_read(const Session* session, std::string_view key, uint64_t min_version) const;
  // Replicated slots (replica_service.cc): applies a client's write here through
  // core_.replication (`store` changes the store) and finishes the call once every replica
  // holds it; `version` receives the write's version, `counter` the bytes.
  grpc::ServerUnaryReactor* replicated(grpc::CallbackServerContext* ctx, std::string_view key,
                                       bool erase, const std::function<Status()>& store,
                                       std::function<void(uint64_t)> version, uint64_t bytes,
                                       std::atomic<uint64_t>* counter);
  // Put of a key in a replicated slot from a client: fenced, admitted, then replicated().
  grpc::ServerUnaryReactor* replicated_put(grpc::CallbackServerContext* ctx,
                                           const std::shared_ptr<Session>& session,
                                           const v1::PutRequest* req, v1::PutReply* reply);
  // PutMany with replicas: each item as a replicated write; the reply once all are answered.
  grpc::ServerUnaryReactor* replicated_put_many(grpc::CallbackServerContext* ctx,
                                                const Session& session,
                                                const v1::PutManyRequest& req,
                                                v1::PutManyReply* reply);
  grpc::ServerUnaryReactor* replicated_delete(grpc::CallbackServerContext* ctx,
                                              std::shared_ptr<Session> session,
                                              const v1::DeleteRequest& req, v1::DeleteReply* reply);
  // A GET miss in cluster mode: asks the view again (the map may have changed during the
  // lookup), so a key in a slot this node no longer serves, or one moving out, gets a redirect
  // instead of `miss`.
  Status after_miss(const Session* session, std::string_view key, Status miss) const;

  ServerCore& core_;
  const log::Logger* logger_ = &log::current();  // the server's: made during Server::start
  // Recursive: a cancel may run the stream's reactions, and so remove_stream, on this thread.
  std::recursive_mutex streams_mu_;
  bool streams_stopped_ = false;                              // guarded by streams_mu_
  std::unordered_set<grpc::CallbackServerContext*> streams_;  // guarded by streams_mu_
};

}  // namespace kvrdma::server
