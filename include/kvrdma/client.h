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

// One item of put_many.
struct KeyValue {
  std::string_view key;
  std::string_view value;
};

// A request submitted by Client::get_async / put_async, not waited for yet. Over the request
// channel it is in flight from the submit on, so a thread may keep many outstanding (pipelining);
// without the channel (turned off, an old server, cluster mode) the request ran at the submit and
// wait() returns its outcome. Move-only; one thread at a time. Dropping it without wait()
// abandons the answer (a late one is never taken for another request). The Client must outlive it.
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
  friend class Client;
  explicit Pending(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
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

  // Removes `key`; NOT_FOUND when it was absent.
  Status erase(std::string_view key);

  // Pipelined GET and PUT (see Pending): submit many, then wait for each. A GET whose value is too
  // large for a channel slot, and a PUT too large for one, complete at wait() the blocking way.
  Pending get_async(std::string_view key);
  Pending put_async(std::string_view key, std::string_view value, uint64_t ttl_ms = 0);

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

}  // namespace kvrdma
