// Server metrics: latency histograms per operation, and the Prometheus text (format 0.0.4) that
// /metrics serves and Server::metrics_text() returns (docs/metrics.md lists every family).
//
// Recording is on every server, whether or not --metrics-addr serves it: an observation is two
// steady-clock reads and two relaxed atomic adds on a cache line of the recording thread's shard,
// with no lock, so the GET hot path pays nothing measurable (docs/metrics.md has the figures).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvrdma/stats.h"
#include "transport/transport.h"

namespace kvrdma::server {

// What a latency histogram times. The `op` label of kvrdma_request_duration_seconds is
// op_name(); kTransportWrite has its own family.
enum class Op : uint8_t {
  kGetInline,    // a GET answered inside its reply: inline values, misses, errors, "ask again"
  kGetWritten,   // a GET whose value the transport wrote, until the write completed
  kPutInline,    // a Put carrying its value
  kPutTwoPhase,  // from PutBegin to the PutCommit that stores the value (the client's write)
  kDelete,
  kGetBatch,        // a GetMany (unary or on a stream), until its last write completed
  kPutBatch,        // a PutMany
  kTransportWrite,  // one transport write of a GET value, issue to completion
  kCount
};

// "get_inline", "put_two_phase", ... ("transport_write" for kTransportWrite).
const char* op_name(Op op);

// Fixed log-spaced bucket bounds: 2^i microseconds for i = 0..kBounds-1 (1 us .. ~8.4 s), then
// +Inf.
constexpr size_t kBounds = 24;
// The upper bound of bucket `i` (< kBounds) in seconds.
double bucket_bound_seconds(size_t i);
// The bucket an observation of `ns` nanoseconds falls in: the first i with ns <= 2^i us, or
// kBounds (+Inf).
size_t bucket_of(uint64_t ns);

// A read of one histogram: per-bucket counts (not cumulative; the last is +Inf), their total,
// and the sum of observations.
struct HistogramSnapshot {
  std::array<uint64_t, kBounds + 1> buckets{};
  uint64_t count = 0;
  uint64_t sum_ns = 0;
};

// Latency histograms of every Op. Thread-safe and lock-free: any thread records, any thread
// snapshots. Counts are sharded by thread (kShards cache lines per Op) so concurrent handlers do
// not bounce one line; a snapshot taken during recording may miss in-flight observations, and
// its count is the sum of its buckets (so +Inf == count always holds in the text).
class Metrics {
 public:
  using Clock = std::chrono::steady_clock;

  void observe(Op op, Clock::duration elapsed);
  void observe_since(Op op, Clock::time_point start) { observe(op, Clock::now() - start); }
  // `done`, timed: calling the result records the time since this call under `op`, then calls
  // `done`. For completions that run on another thread (transport writes, batch answers).
  transport::Completion timed(Op op, transport::Completion done);

  HistogramSnapshot snapshot(Op op) const;

 private:
  static constexpr size_t kShards = 8;
  struct alignas(64) Shard {
    std::array<std::atomic<uint64_t>, kBounds + 1> buckets{};
    std::atomic<uint64_t> sum_ns{0};
  };
  std::array<std::array<Shard, kShards>, static_cast<size_t>(Op::kCount)> shards_;
};

// Times one operation from construction: records under its Op when destroyed, unless then()
// handed the time to a completion first. Not thread-safe (one per call, on the handler's stack).
class OpTimer {
 public:
  OpTimer(Metrics& metrics, Op op) : metrics_(&metrics), op_(op), start_(Metrics::Clock::now()) {}
  ~OpTimer() {
    if (metrics_ != nullptr) metrics_->observe_since(op_, start_);
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

  // The operation goes on past this call: `done`, when called, records the time since this
  // timer started under `op` (not the timer's own Op), and this timer records nothing.
  transport::Completion then(Op op, transport::Completion done);

 private:
  Metrics* metrics_;
  Op op_;
  Metrics::Clock::time_point start_;
};

// The whole /metrics page: one family per KVRDMA_SERVER_STATS figure (counters as
// kvrdma_<name>_total, gauges and the state version as kvrdma_<name>, identity figures as labels
// of kvrdma_server_info), then the histograms. Every series carries node_id, and cluster in
// cluster mode (stats.cluster not empty).
std::string render_metrics(const ServerStats& stats, const Metrics& metrics);

// A label value escaped for the text format: backslash, double quote and newline.
std::string escape_label_value(std::string_view value);
// A HELP text escaped for the text format: backslash and newline.
std::string escape_help(std::string_view text);

}  // namespace kvrdma::server
