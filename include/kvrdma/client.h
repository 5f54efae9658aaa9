// kvrdma::Client: sessions with one kv-server, or with the nodes of a cluster (docs/cluster.md),
// opened on first use and routed to by the key's slot. Owns one receive buffer registered with
// its transport, shared by every session; GETs of values above the inline threshold are written
// there by the server. Thread-safe: one Client may be shared by many threads, and its buffer
// serves their GETs at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvrdma/cluster.h"
#include "kvrdma/export.h"
#include "kvrdma/options.h"
#include "kvrdma/stats.h"
#include "kvrdma/status.h"

namespace kvrdma {

// A value as it sits in the client's receive buffer (zero copy) or, for inline values, in memory
// the view owns. The buffer space is given back when the view is destroyed or release()d.
// Move-only. May outlive the Client that returned it.
class KVRDMA_EXPORT ValueView {
 public:
  ValueView() = default;
  ValueView(ValueView&&) noexcept = default;
  ValueView& operator=(ValueView&&) noexcept = default;
  ValueView(const ValueView&) = delete;
  ValueView& operator=(const ValueView&) = delete;
  ~ValueView() = default;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view str() const { return {reinterpret_cast<const char*>(data_), size_}; }
  // True when the bytes arrived by a transport write into the receive buffer.
  bool in_receive_buffer() const { return in_buffer_; }
  // Gives the space back now; the view is empty afterwards.
  void release();

  // For the library: wraps bytes kept alive by `owner`.
  ValueView(std::shared_ptr<const void> owner, const std::byte* data, size_t size, bool in_buffer)
      : owner_(std::move(owner)), data_(data), size_(size), in_buffer_(in_buffer) {}

 private:
  std::shared_ptr<const void> owner_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
  bool in_buffer_ = false;
};

// Where memory lives. Host memory only today; the kind is in the API (and the C ABI) so device
// memory can be added without breaking either.
enum class MemoryKind : int { kHost = 0 };

// Memory a Client registered (register_memory) or allocated (allocate) for values to land in
// (get_into) and leave from (put_from) with no copy. Move-only; deregisters (and, for allocate,
// frees) on destruction or release(). May outlive the Client: it then only frees. Not
// thread-safe itself (release from one thread); calls using it from many threads are fine.
class KVRDMA_EXPORT MemoryHandle {
 public:
  MemoryHandle() = default;
  MemoryHandle(MemoryHandle&& other) noexcept
      : state_(std::move(other.state_)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        kind_(other.kind_) {}
  MemoryHandle& operator=(MemoryHandle&& other) noexcept;
  MemoryHandle(const MemoryHandle&) = delete;
  MemoryHandle& operator=(const MemoryHandle&) = delete;
  ~MemoryHandle();

  // The first byte, and the bytes usable from it; null / 0 once released.
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  MemoryKind kind() const { return kind_; }
  bool valid() const { return state_ != nullptr; }
  // Lets the memory go: once no call still uses it, every server it was announced to forgets
  // it and allocate()'s memory is freed. After a failed get_into see README.md "Caller memory":
  // a late write may still reach the spot until that request's deadline.
  void release();

  // For the library.
  struct State;
  MemoryHandle(std::shared_ptr<State> state, std::byte* data, size_t size, MemoryKind kind)
      : state_(std::move(state)), data_(data), size_(size), kind_(kind) {}
  const std::shared_ptr<State>& state() const { return state_; }

 private:
  std::shared_ptr<State> state_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  MemoryKind kind_ = MemoryKind::kHost;
};

// One item of get_many_into: the value of `key` goes to handle->data() + offset, at most
// `capacity` bytes.
struct GetIntoItem {
  std::string_view key;
  const MemoryHandle* handle = nullptr;
  size_t offset = 0;
  size_t capacity = 0;
  uint64_t* value_len = nullptr;  // when given: the value's length once known (also when too small)
};

// One item of put_many_from: `len` bytes at handle->data() + offset become the value of `key`.
struct PutFromItem {
  std::string_view key;
  const MemoryHandle* handle = nullptr;
  size_t offset = 0;
  size_t len = 0;
};

// One item of put_many.
struct KeyValue {
  std::string_view key;
  std::string_view value;
};

// A request submitted by Client::get_async / put_async or a Client::Batch, not waited for yet.
// Over the request channel it is in flight from the submit on, so a thread may keep many
// outstanding (pipelining); in cluster mode it went to its key's owner. What the channel cannot
// carry (no channel: turned off, an old server; a GET whose value exceeds a slot, a PUT above the
// inline threshold) runs the blocking way: at the submit, or at wait() for a GET found too large.
// A refusal by a node that no longer owns the key (a slot moved) is redone at wait() the blocking
// way, which refreshes the cluster map. Move-only; one thread at a time. Dropping it without
// wait() abandons the answer (a late one is never taken for another request). The Client must
// outlive it.
class KVRDMA_EXPORT Pending {
 public:
  Pending();
  Pending(Pending&&) noexcept;
  Pending& operator=(Pending&&) noexcept;
  ~Pending();
  // True when wait() would not block.
  bool ready();
  // The value (GET) or an empty string (PUT), or the failure; as get_copy / put would return.
  // Once only: a second wait() is FAILED_PRECONDITION.
  Result<std::string> wait();

  struct State;

 private:
  friend struct PendingAccess;  // the library's constructor (client_async.cc)
  explicit Pending(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// How much one node session used its request channel (Client::channel_use): the requests posted
// into it and the doorbells rung for them, so tests and benchmarks can see what rode the channel
// and that a batch rang once. Counts restart when a session is re-opened (it gets a new channel).
struct ChannelUse {
  std::string address;     // the node's address
  uint64_t requests = 0;   // requests posted (every kind: GET, get_many pieces, PUT, DELETE)
  uint64_t doorbells = 0;  // ring calls (a wake-up syscall is made only when the server sleeps)
};

class KVRDMA_EXPORT Client {
 public:
  // Registers the receive buffer, connects the transport and opens a session (Hello).
  // options.server_addr may list several addresses, comma-separated: the first that answers is
  // asked for the cluster map. UNAVAILABLE or DEADLINE_EXCEEDED within options.timeout_ms when
  // none is reachable.
  static Result<std::unique_ptr<Client>> connect(const ClientOptions& options);

  // Ends the session (Goodbye). Views still alive keep the buffer mapped until they go.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // The value of `key`, zero copy. NOT_FOUND when absent or expired. A value larger than the
  // free buffer space waits for space (up to the timeout); one larger than the whole buffer is
  // FAILED_PRECONDITION naming the size needed. After DEADLINE_EXCEEDED, UNAVAILABLE or
  // INTERNAL the buffer space this GET offered is not reused (the server's write may still land
  // there); past a quarter of the buffer set aside, the session is re-opened with a fresh one.
  Result<ValueView> get(std::string_view key);
  // The same, copied into a string.
  Result<std::string> get_copy(std::string_view key);

  // Stores `value` under `key`; ttl_ms 0 means no expiry. Values above the inline threshold go
  // reserve -> transport write -> commit. Readers see the old value or the new one, whole.
  Status put(std::string_view key, std::string_view value, uint64_t ttl_ms = 0);

  // Deletes `key`; NOT_FOUND when it was absent. Named `del` because `delete` is a keyword: the
  // operation is "delete" everywhere else (kvrdma_delete, kv-client delete, the Delete RPC).
  Status del(std::string_view key);
  // The old name of del(), kept so existing callers still build.
  [[deprecated("use Client::del")]] Status erase(std::string_view key) { return del(key); }

  // Pipelined GET and PUT (see Pending): submit many, then wait for each. Each submit rings its
  // node's doorbell; a Batch posts many requests and rings once per node.
  Pending get_async(std::string_view key);
  Pending put_async(std::string_view key, std::string_view value, uint64_t ttl_ms = 0);
  class Batch;
  // An empty batch of requests for this client (see Batch).
  Batch batch();
  // The request channel's use by each open node session, ordered by address; a session without
  // a channel is not listed.
  std::vector<ChannelUse> channel_use() const;

  // Many GETs in one round trip: one Result per key, in order (duplicates allowed, each gets its
  // own view). Small values come back inline; large ones are written into the receive buffer by
  // the server, all at once, after a first call learns their sizes. A batch whose values exceed
  // the free buffer space is split into several calls, and views of its earlier values are copied
  // out of the buffer to make room, so it completes (or fails per key with DEADLINE_EXCEEDED)
  // within the timeout, never deadlocks.
  std::vector<Result<ValueView>> get_many(std::span<const std::string_view> keys);
  // Many PUTs: values up to the inline threshold travel together (several calls when the batch
  // exceeds the per-call limits); larger ones go the two-phase path one by one. One Status per
  // item, in order.
  std::vector<Status> put_many(std::span<const KeyValue> items, uint64_t ttl_ms = 0);

  // --- Caller memory (README.md "Caller memory") ---
  // Registers `len` bytes at `ptr` (memory the caller owns and keeps alive while the handle
  // lives) with the transport. libfabric registers any host memory (a memlock failure names
  // `ulimit -l`); the mock cannot and answers FAILED_PRECONDITION: use allocate() there.
  Result<MemoryHandle> register_memory(void* ptr, size_t len, MemoryKind kind = MemoryKind::kHost);
  // `len` bytes of registered memory, zeroed, owned by the handle: on every transport the
  // application may use it as its own (e.g. its block pool).
  Result<MemoryHandle> allocate(size_t len);
  // Has the server write the value of `key` straight to handle.data() + offset; returns its
  // length. Small values (inline) are copied there from the reply. A value longer than
  // `capacity` is FAILED_PRECONDITION naming its size, nothing written; NOT_FOUND when absent;
  // INVALID_ARGUMENT for a released handle, one of another client, or [offset, +capacity)
  // outside it. After DEADLINE_EXCEEDED, UNAVAILABLE or INTERNAL the server's write may still
  // land in [offset, +capacity) until the request's deadline (timeout_ms): do not reuse or free
  // that spot before then.
  // `value_len`, when given, receives the value's length once known (also when too small).
  Result<uint64_t> get_into(std::string_view key, const MemoryHandle& handle, size_t offset,
                            size_t capacity, uint64_t* value_len = nullptr);
  // The value of `key` copied into `buffer` (its length returned); zero copy (as get_into) when
  // `buffer` lies inside memory this client registered or allocated. FAILED_PRECONDITION naming
  // the size when it does not fit.
  Result<uint64_t> get_into(std::string_view key, std::span<std::byte> buffer,
                            uint64_t* value_len = nullptr);
  // Stores the `len` bytes at handle.data() + offset under `key`: values above the inline
  // threshold go reserve -> transport write from that memory -> commit, with no copy. The bytes
  // must not change until this returns.
  Status put_from(std::string_view key, const MemoryHandle& handle, size_t offset, size_t len,
                  uint64_t ttl_ms = 0);
  // Many get_into in one call per server: every transport write of the call in flight at once.
  // One result per item, in order (misses are NOT_FOUND).
  std::vector<Result<uint64_t>> get_many_into(std::span<const GetIntoItem> items);
  // Many put_from: reservations first, then every transport write at once, then the commits.
  std::vector<Status> put_many_from(std::span<const PutFromItem> items, uint64_t ttl_ms = 0);

  // The counters of the first server that answered (cluster() covers every node).
  Result<ServerStats> stats();
  // Waits until the server's state version (ServerStats::version) is above `version`, or
  // `max_wait` (at most 10 s) passes, then returns the stats. Wait for a condition as
  // `for (v = 0; !done(s); v = s.version) s = stats_after(v, 1s)` instead of polling stats().
  Result<ServerStats> stats_after(uint64_t version, std::chrono::milliseconds max_wait);

  // Where the value of `key` lives (asked of its owner). NOT_FOUND when absent.
  Result<ValueLocation> locate(std::string_view key);
  // The cluster's map and each node's counters; a node that does not answer is listed as
  // unreachable. Outside cluster mode: epoch 0 and the one server.
  Result<ClusterInfo> cluster();

  // Of the first server that answered (the session with it, its limits).
  uint64_t session_id() const;
  uint64_t inline_threshold() const;
  uint64_t buffer_size() const;
  uint64_t max_value_bytes() const;
  std::string transport_description() const;

  class Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Many GETs and PUTs submitted together: submit() posts every request into its node's request
// channel and then rings each node's doorbell once, so N requests cost one wake-up per node
// instead of N. Each request gets its own Pending, waited for as after get_async / put_async.
//
//   auto b = client.batch();
//   for (auto& k : keys) b.get(k);
//   b.put("k", "v", ttl_ms);
//   std::vector<Pending> ps = b.submit();  // ps[i] answers the i-th request added
//
// Requests of one batch are not ordered among themselves (a GET and a PUT of one key in the same
// batch may run either way round). More requests for a node than its channel has slots (64) are
// posted as earlier ones complete (one more ring each time). Not thread-safe: one thread fills
// and submits a batch; batches of one Client on different threads are independent. The Client
// must outlive the batch and its Pendings.
class KVRDMA_EXPORT Client::Batch {
 public:
  Batch(Batch&&) noexcept;
  Batch& operator=(Batch&&) noexcept;
  ~Batch();
  // Adds a GET / a PUT (ttl_ms 0: no expiry). Key and value are copied; nothing is sent yet.
  Batch& get(std::string_view key);
  Batch& put(std::string_view key, std::string_view value, uint64_t ttl_ms = 0);
  // Requests added since the last submit.
  size_t size() const { return items_.size(); }
  // Sends every request added, in the order added (one Pending each, same order), and empties
  // the batch for reuse.
  std::vector<Pending> submit();

 private:
  friend class Client;
  explicit Batch(Impl* impl) : impl_(impl) {}
  struct Item {
    bool put = false;
    std::string key, value;
    uint64_t ttl_ms = 0;
  };
  Impl* impl_;
  std::vector<Item> items_;
};

}  // namespace kvrdma
