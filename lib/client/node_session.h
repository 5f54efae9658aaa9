// NodeSession: the client's session with one kv-server node (channel, stub, GetStreams, the
// session state and its re-open, one keepalive step). It borrows the client's one transport and
// the receive buffer its BufferSource hands it; the router (Client::Impl) owns both and routes
// keys to sessions (docs/cluster.md, Clients). The single-key data path is in node_session_io.cc.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "client/batch.h"
#include "client/caller_memory.h"
#include "client/channel_client.h"
#include "client/get_stream.h"
#include "client/receive_buffer.h"
#include "kv_cache.grpc.pb.h"
#include "kvrdma/client.h"
#include "kvrdma/options.h"
#include "transport/transport.h"

namespace kvrdma::client {

using Steady = std::chrono::steady_clock;

// One opened session, replaced whole when it is re-opened (the server lost it, or the receive
// buffer was renewed). Calls work on a snapshot, so a re-open never changes the session under a
// call in flight; the old receive buffer lives on while views of it do.
struct SessionState {
  v1::HelloReply hello;
  std::shared_ptr<ReceiveBuffer> buffer;                 // the buffer this Hello announced
  std::shared_ptr<transport::RemoteRegion> server_pool;  // target of large PUT writes
  uint64_t generation = 0;                               // 0 for the first session, then +1
  // The session's request channel when the server accepted one; null: gRPC only.
  std::shared_ptr<ChannelClient> channel;
};

// Where a session gets the receive buffer it announces. Implemented by the router; called with
// the session's re-open lock held, from any thread.
class BufferSource {
 public:
  virtual ~BufferSource() = default;
  // The buffer to announce in a Hello. `before` is the buffer the session announced last
  // (nullptr on its first open): outside cluster mode that one is sealed (the mock unlinked it
  // once the server mapped it), so when it is still the current one a fresh one replaces it.
  virtual Result<std::shared_ptr<ReceiveBuffer>> buffer_for_hello(const ReceiveBuffer* before) = 0;
  // True outside cluster mode: seal the buffer after Hello (one server only ever maps it).
  virtual bool seal_after_hello() const = 0;
};

// True when the server answered that it does not know the session (it restarted or the lease
// ran out): the only failure that proves the request was not executed and a new Hello helps.
bool session_gone(const Status& s);

// Largest value a single PUT sends inside the RPC (larger: two-phase), as the server announced
// it; an older server announces only inline_threshold.
inline uint64_t put_inline_threshold(const v1::HelloReply& hello) {
  return hello.put_inline_threshold() != 0 ? hello.put_inline_threshold()
                                           : hello.inline_threshold();
}

// "host:port" from an address given with or without a scheme.
std::string grpc_target(std::string_view addr);

// Thread-safe: every method may be called from any thread. Locks: reopen_mu_ before session_mu_.
class NodeSession : public std::enable_shared_from_this<NodeSession> {
 public:
  // Dials `address` (no wait, no Hello yet). `transport` and `buffers` outlive the session.
  // INVALID_ARGUMENT when the address is not host:port.
  static Result<std::shared_ptr<NodeSession>> create(
      std::string_view address, const ClientOptions& options,
      std::shared_ptr<transport::Transport> transport, BufferSource* buffers);
  // Says Goodbye when a session is open.
  ~NodeSession();
  NodeSession(const NodeSession&) = delete;
  NodeSession& operator=(const NodeSession&) = delete;

  // Waits until the channel is connected, up to `d`. With `fail_fast` gives up as soon as the
  // channel reports a failed connection attempt (for trying the next address of a list).
  bool wait_connected(Steady::time_point d, bool fail_fast);
  // The UNAVAILABLE status naming this address, for a failed wait_connected.
  Status unreachable() const;
  // Opens the session (Hello) unless one is open; fast when it is.
  Status ensure_open(Steady::time_point d);

  // Data calls (see Client); `epoch` is the map epoch the caller routed by (0 outside cluster
  // mode). A session the server lost is re-opened and the call repeated once.
  Result<ValueView> get(std::string_view key, uint64_t epoch);
  Status put(std::string_view key, std::string_view value, uint64_t ttl_ms, uint64_t epoch);
  Status del(std::string_view key, uint64_t epoch);
  // `put_one` stores one value above the inline threshold (the router's routed PUT).
  std::vector<Result<ValueView>> get_many(std::span<const std::string_view> keys, uint64_t epoch);
  std::vector<Status> put_many(
      std::span<const KeyValue> items, uint64_t ttl_ms, uint64_t epoch,
      std::function<Status(std::string_view, std::string_view, uint64_t)> put_one);
  Result<v1::LocateReply> locate(std::string_view key, uint64_t epoch);

  // Caller memory, in node_session_mem.cc (see Client; items were checked against their
  // handles). Each announces the regions it names to this node first when needed.
  Result<uint64_t> get_into(const MemGet& item, uint64_t epoch);
  Status put_from(const MemPut& item, uint64_t ttl_ms, uint64_t epoch);
  std::vector<Result<uint64_t>> get_many_into(std::span<const MemGet> items, uint64_t epoch);
  std::vector<Status> put_many_from(std::span<const MemPut> items, uint64_t ttl_ms, uint64_t epoch);
  // Forgets region `region_id` of session `session_id` at this node (best effort, bounded).
  void release_region(uint64_t session_id, uint64_t region_id);

  // Calls that need no session.
  Result<v1::StatsReply> stats(uint64_t changed_since, std::chrono::milliseconds wait);
  // The node's map; an empty one (epoch 0) from a server older than cluster mode.
  Result<v1::ClusterMap> cluster_map(Steady::time_point d);

  // Replaces the session `seen` by a new one announcing the source's current buffer, unless
  // another thread already did.
  Status reopen(const SessionState& seen, Steady::time_point d);
  // One KeepAlive for the open session (re-opens it when the server lost it). No-op when none.
  void keepalive();

  // The open session, or nullptr before ensure_open succeeded.
  std::shared_ptr<const SessionState> current() const {
    std::lock_guard lock(session_mu_);
    return session_;
  }
  const std::string& address() const { return target_; }
  // The node id its Hello answered; `fallback` before that.
  uint32_t node_id(uint32_t fallback) const;
  bool channel_ready() const;

 private:
  NodeSession(std::string target, const ClientOptions& options,
              std::shared_ptr<transport::Transport> transport, BufferSource* buffers);
  Steady::time_point deadline() const {
    return Steady::now() + std::chrono::milliseconds(options_.timeout_ms);
  }
  void set_deadline(grpc::ClientContext& ctx, Steady::time_point d) const;
  Status call_failed(const grpc::Status& s, std::string_view what) const;
  Result<std::shared_ptr<SessionState>> open_session(const ReceiveBuffer* before,
                                                     Steady::time_point d);
  // Runs `op` on the session; when the server proves the session gone, re-opens it and runs
  // `op` once more, within the same deadline. Only for steps that are safe to repeat.
  template <class Op>
  auto with_session(Op op) -> decltype(op(std::declval<const SessionState&>(), Steady::now()));
  template <class Item, class R, class Run>
  void retry_lost_session(std::span<const Item> items, std::vector<R>& results,
                          const SessionState& seen, Run run);
  BatchChannel batch_channel(const SessionState& st, uint64_t epoch) const;
  Status get_round_trip(const v1::GetRequest& req, v1::GetReply* reply, Steady::time_point d);
  Result<ValueView> get_once(const SessionState& st, std::string_view key, uint64_t epoch,
                             Steady::time_point d);
  Status put_once(const SessionState& st, std::string_view key, std::string_view value,
                  uint64_t ttl_ms, uint64_t epoch, Steady::time_point d);
  // Caller memory (node_session_mem.cc): `op` on the open session, once more on a re-opened
  // one when the server lost it (the region is then announced again).
  template <class Op>
  auto with_session_mem(Op op) -> decltype(op(std::declval<const SessionState&>(), Steady::now()));
  // The id `mem` has at this node's session `st`, announcing it (RegisterRegion) first if needed.
  Result<uint64_t> region_id(MemoryHandle::State& mem, const SessionState& st,
                             Steady::time_point d);
  Result<uint64_t> get_into_once(const SessionState& st, const MemGet& item, uint64_t epoch,
                                 Steady::time_point d);
  std::vector<Result<uint64_t>> get_many_into_once(const SessionState& st,
                                                   std::span<const MemGet> items, uint64_t epoch,
                                                   Steady::time_point d);
  std::vector<Status> put_many_from_once(const SessionState& st, std::span<const MemPut> items,
                                         uint64_t ttl_ms, uint64_t epoch, Steady::time_point d);
  Status put_large(const SessionState& st, std::string_view key, std::string_view value,
                   uint64_t ttl_ms, uint64_t epoch, Steady::time_point d);

  // The request channel (node_session_channel.cc). Offers a link in `req` when --channel is on
  // and the transport has one; `offered` keeps it for open_channel.
  void offer_channel(v1::HelloRequest* req, std::unique_ptr<channel::ClientLink>* offered) const;
  // After Hello: the channel the server accepted into `st`, or none (logged).
  void open_channel(SessionState* st, std::unique_ptr<channel::ClientLink> offered) const;
  // One GET round trip over the channel, as get_round_trip over gRPC (which carries it while
  // every slot is busy, e.g. held by pipelined requests).
  Status channel_get(const SessionState& st, const v1::GetRequest& req, v1::GetReply* reply,
                     Steady::time_point d);
  // A PUT whose key and value fit one slot; nullopt when they do not, or every slot is busy
  // (use gRPC).
  std::optional<Status> channel_put(const SessionState& st, std::string_view key,
                                    std::string_view value, uint64_t ttl_ms, uint64_t epoch,
                                    Steady::time_point d);
  // nullopt without a channel, or while every slot is busy (then gRPC carries it).
  std::optional<Status> channel_delete(const SessionState& st, std::string_view key, uint64_t epoch,
                                       Steady::time_point d);
  // get_many over the channel: keys in slot-sized requests, all posted before any is waited
  // for; values too large for a slot (or deferred) are fetched one by one with get_once.
  std::vector<Result<ValueView>> channel_get_many(const SessionState& st,
                                                  std::span<const std::string_view> keys,
                                                  uint64_t epoch, Steady::time_point d);

  const std::string target_;
  const ClientOptions options_;
  const std::shared_ptr<transport::Transport> transport_;
  BufferSource* const buffers_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KvCache::Stub> stub_;
  std::unique_ptr<GetStreams> streams_;  // uses stub_
  // Size of the last value that came by transport write, 0 when the last one came inline: the
  // guess for the next GET (see get_once).
  std::atomic<uint64_t> large_hint_{0};
  mutable std::mutex session_mu_;
  std::shared_ptr<const SessionState> session_;  // guarded by session_mu_
  std::mutex reopen_mu_;                         // one open / re-open at a time
};

}  // namespace kvrdma::client
