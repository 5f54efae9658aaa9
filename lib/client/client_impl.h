// Client::Impl, the router: owns the options, the one transport, the one receive buffer (and its
// retire / renew / hold policy), the cluster map, the sessions by node (opened on first use) and
// one keepalive thread for all of them. Routes each key to its owner's session; outside cluster
// mode (map epoch 0) every call goes to the one server, as a single-node client.
// Split over client.cc (connect, data calls, buffers, keepalive) and client_cluster.cc (the map,
// routing after a refusal, locate, cluster, stats).
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/node_session.h"
#include "client/receive_buffer.h"
#include "client/router.h"
#include "cluster/slot_map.h"
#include "common/logging.h"
#include "kvrdma/client.h"

namespace kvrdma {

// Thread-safe. Lock order: renew_mu_, then a session's re-open lock (NodeSession), then
// buffer_mu_; refresh_mu_, then sessions_mu_ or map_mu_. sessions_mu_, map_mu_, buffer_mu_,
// held_mu_, mem_mu_ and mu_ are never held while taking another.
class Client::Impl final : public client::BufferSource {
 public:
  using Steady = std::chrono::steady_clock;

  ~Impl() override;
  Status connect(const ClientOptions& options);

  Result<ValueView> get(std::string_view key);
  Status put(std::string_view key, std::string_view value, uint64_t ttl_ms);
  Status del(std::string_view key);
  std::vector<Result<ValueView>> get_many(std::span<const std::string_view> keys);
  std::vector<Status> put_many(std::span<const KeyValue> items, uint64_t ttl_ms);
  Result<ServerStats> stats(uint64_t changed_since, std::chrono::milliseconds wait);
  Result<ValueLocation> locate(std::string_view key);
  Result<ClusterInfo> cluster();

  // --- caller memory (client_mem.cc; its routing in client_route.cc) ---
  Result<MemoryHandle> register_memory(void* ptr, size_t len, MemoryKind kind);
  Result<MemoryHandle> allocate(size_t len);
  // The item for `handle` at [offset, +span): INVALID_ARGUMENT for an empty key, a released
  // handle, one of another client, or a span outside it.
  Result<client::MemGet> mem_get(std::string_view key, const MemoryHandle* handle, size_t offset,
                                 size_t capacity) const;
  Result<client::MemPut> mem_put(std::string_view key, const MemoryHandle* handle, size_t offset,
                                 size_t len) const;
  // The live memory of this client that holds [p, +len) and p's offset in it; null when none.
  std::pair<std::shared_ptr<MemoryHandle::State>, size_t> find_memory(const std::byte* p,
                                                                      size_t len);
  Result<uint64_t> get_into(const client::MemGet& item);
  Status put_from(const client::MemPut& item, uint64_t ttl_ms);
  std::vector<Result<uint64_t>> get_many_into(std::span<const client::MemGet> items);
  std::vector<Status> put_many_from(std::span<const client::MemPut> items, uint64_t ttl_ms);

  // --- pipelining (client_async.cc) ---
  // The session a request for `key` goes to, opened, and the map epoch it was routed by: the
  // owner's by the current map in cluster mode (0 and the home session otherwise). A `read` of
  // a slot this client has written nothing to goes where read_node sends it.
  Result<std::pair<std::shared_ptr<client::NodeSession>, uint64_t>> async_route(
      std::string_view key, bool read);
  std::vector<ChannelUse> channel_use() const;

  // The session with the first server that answered (never null after connect succeeded).
  client::NodeSession& home() const { return *home_; }
  // Cluster mode (keys route to their owners); constant after connect.
  bool in_cluster() const { return cluster_; }
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(options_.timeout_ms);
  }
  // This client's log level, installed (log::Scope) by every public entry point and on every
  // thread the client runs, so its lines never follow another component's level.
  const log::Logger* logger() const { return logger_.get(); }

  // BufferSource.
  Result<std::shared_ptr<client::ReceiveBuffer>> buffer_for_hello(
      const client::ReceiveBuffer* before) override;
  bool seal_after_hello() const override { return !cluster_; }

 private:
  std::shared_ptr<log::Logger> logger_ = std::make_shared<log::Logger>(LogLevel::kWarn);
  Steady::time_point deadline() const {
    return Steady::now() + std::chrono::milliseconds(options_.timeout_ms);
  }

  // --- buffers (client.cc) ---
  Result<std::shared_ptr<client::ReceiveBuffer>> new_buffer();
  std::shared_ptr<client::ReceiveBuffer> current_buffer() const;
  // Once more than 1/kRetiredShare of the receive buffer is retired (extents of failed GETs, see
  // ReceiveBuffer::retire), replaces it by a fresh one and re-opens the sessions with it, so a
  // run of failures cannot use the buffer up. Views of the old buffer stay valid. Not while
  // kMaxHeldBuffers replaced buffers are still held (below): a run of failures then waits for
  // space in the current buffer instead of mapping buffer after buffer. A replaced session gets
  // no Goodbye: calls other threads still have in flight on it finish there, and it expires
  // with its lease once no keepalive names it.
  static constexpr uint64_t kRetiredShare = 4;
  static constexpr size_t kMaxHeldBuffers = 2;
  void renew_buffer_if_retired();
  // A buffer with retired extents stays mapped and registered after it is replaced, until no
  // late write can still reach it: a server gives up a GET's write at the request's deadline
  // (at most timeout_ms), but a write already handed to the provider cannot be recalled, so the
  // margin is generous. Freeing it earlier let such a write land in unmapped memory (a crash in
  // the shm provider's copy) or in whatever was mapped there next.
  std::chrono::milliseconds held_buffer_grace() const {
    return std::chrono::milliseconds(options_.timeout_ms) + std::chrono::seconds(60);
  }
  void hold_if_retired(std::shared_ptr<client::ReceiveBuffer> buffer);
  size_t release_held_buffers();  // drops held buffers whose grace has passed; how many are left
  void keepalive_loop();
  // Cluster mode: drops sessions and probe channels of nodes the map no longer names (a dead
  // node's session would otherwise be kept alive, and warned about, forever).
  void prune_sessions();
  std::vector<std::shared_ptr<client::NodeSession>> sessions() const;

  // --- cluster routing (client_cluster.cc) ---
  struct Retry {
    std::shared_ptr<client::NodeSession> session;  // null: no retry
    uint64_t epoch = 0;
    Status fail;  // with no session: OK returns the first failure as is, else this instead
  };
  std::shared_ptr<const cluster::SlotMap> current_map() const;
  // The session with node `id` at `address` (created on first use; replaced when the node's
  // address changed).
  Result<std::shared_ptr<client::NodeSession>> session_for(uint32_t id, const std::string& address);
  // The session of node `id`, the owner or a replica of `slot` by `map`; UNAVAILABLE when the
  // map names no such node (kNoNode: the slot has no owner).
  Result<std::shared_ptr<client::NodeSession>> copy_session(const cluster::SlotMap& map,
                                                            uint32_t slot, uint32_t id);
  // Asks `first`, then every node the map names, then the seed list for the map, keeping the
  // highest epoch; installs it when newer than ours. Returns the map now in force. Without a
  // `first` (no refusal named an owner) and right after a refresh that found nothing newer, it
  // asks nobody.
  std::shared_ptr<const cluster::SlotMap> refresh_map(std::string_view first, uint64_t want_epoch);
  // Where to retry once a call for `slot` failed at node `at_id` with `failed` (routed at `epoch`).
  Retry after_failure(const Status& failed, uint32_t slot, uint32_t at_id, uint64_t epoch);
  // Runs `op(session, epoch)` at the owner of `key`'s slot, once more after a refusal (above).
  // `read`: a GET, which may go to a filled replica by options_.read_from (docs/cluster.md
  // "Replicas"); a write records the version it was acknowledged with (note_acked).
  template <class Op>
  auto routed(std::string_view key, Op op, bool read = false)
      -> decltype(op(std::declval<client::NodeSession&>(), uint64_t{}));
  // The node a GET of `slot` goes to: the owner, or by read_from one of its filled replicas.
  uint32_t read_node(const cluster::SlotMap& map, uint32_t slot) const;
  // Raises acked_[slot] to the version the last write on this thread was acknowledged with.
  void note_acked(uint32_t slot);
  // The same for every item a batch on this thread had acknowledged (call_versions.h).
  void note_acked_batch();
  // get_many / put_many in cluster mode: per owner in parallel, refused items retried once.
  // `read`: get_many, whose items go to read_node() (a replica may serve them) at first.
  template <class Item, class R, class Run>
  std::vector<R> run_grouped(std::span<const Item> items, std::span<const uint32_t> slots, Run run,
                             bool read = false);
  Result<cluster::SlotMap> fetch_map(const std::string& address);

  ClientOptions options_;
  std::vector<std::string> seeds_;  // the --server-addr list
  bool cluster_ = false;            // set by connect before any session opens; then constant
  std::shared_ptr<transport::Transport> transport_;
  std::shared_ptr<client::NodeSession> home_;  // set by connect; then constant

  mutable std::mutex map_mu_;
  std::shared_ptr<const cluster::SlotMap> map_;  // guarded by map_mu_
  std::mutex refresh_mu_;                        // one map refresh at a time
  // When the last refresh that found nothing newer ended: callers failing together within
  // kRefreshQuiet of it take its answer instead of asking every node again.
  Steady::time_point fruitless_refresh_;  // guarded by refresh_mu_
  static constexpr std::chrono::milliseconds kRefreshQuiet{100};

  // Per slot, the highest version this client's writes were acknowledged with (read your
  // writes at replicas); kSlots entries in cluster mode, set up by connect, else empty.
  std::vector<std::atomic<uint64_t>> acked_;

  mutable std::shared_mutex sessions_mu_;
  // Sessions by node id (cluster mode), and every session or probe channel by address.
  struct SessionRef {
    std::string address;  // as the map gave it (a node that moves gets a new session)
    std::shared_ptr<client::NodeSession> session;
  };
  std::map<uint32_t, SessionRef> by_id_;                                    // guarded
  std::map<std::string, std::shared_ptr<client::NodeSession>> by_address_;  // guarded

  std::mutex renew_mu_;  // one buffer renewal at a time
  mutable std::mutex buffer_mu_;
  std::shared_ptr<client::ReceiveBuffer> buffer_;  // guarded by buffer_mu_; what Hellos announce
  struct HeldBuffer {
    std::shared_ptr<client::ReceiveBuffer> buffer;
    Steady::time_point until;
  };
  std::mutex held_mu_;
  std::vector<HeldBuffer> held_buffers_;  // guarded by held_mu_

  // Caller memory by first byte, for find_memory; expired entries are dropped as met.
  std::mutex mem_mu_;
  std::map<const std::byte*, std::weak_ptr<MemoryHandle::State>> memories_;  // guarded by mem_mu_

  std::thread keepalive_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
};

}  // namespace kvrdma
