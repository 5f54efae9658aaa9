#include "server/metrics.h"

#include <fmt/format.h>

#include <bit>
#include <memory>

#include "kvrdma/version.h"

namespace kvrdma::server {
namespace {

constexpr const char* kOpNames[] = {"get_inline", "get_written", "put_inline", "put_two_phase",
                                    "delete",     "get_batch",   "put_batch",  "transport_write"};
static_assert(std::size(kOpNames) == static_cast<size_t>(Op::kCount));

// The shard of the calling thread: threads take shards in turn, so a handful of gRPC threads
// each get their own line.
size_t my_shard(size_t shards) {
  static std::atomic<size_t> next{0};
  thread_local const size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine % shards;
}

// A sample value: integers exactly, others as the shortest text that reads back the same.
std::string number(double v) { return fmt::format("{}", v); }

// {node_id="3",cluster="c"} plus `extra` (already formatted, e.g. op="get_inline").
std::string labels(const ServerStats& stats, std::string_view extra = {}) {
  std::string out = fmt::format("node_id=\"{}\"", stats.node_id);
  if (!stats.cluster.empty()) {
    out += fmt::format(",cluster=\"{}\"", escape_label_value(stats.cluster));
  }
  if (!extra.empty()) {
    out += ',';
    out += extra;
  }
  return "{" + out + "}";
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape_help(help), name, type);
}

// The info gauge: every identity figure as a label, plus the library version.
void render_info(std::string& out, const ServerStats& stats) {
  family(out, "kvrdma_server_info", "gauge",
         "always 1; its labels name this server (identity figures and the library version)");
  std::string extra = fmt::format("version=\"{}\"", escape_label_value(kvrdma::version()));
  for (const StatInfo& f : stats_fields()) {
    if (f.role != StatRole::kIdentity) continue;
    if (std::string_view(f.name) == "node_id" || std::string_view(f.name) == "cluster") continue;
    std::string value = f.text ? f.text(stats) : std::to_string(f.number(stats));
    extra += fmt::format(",{}=\"{}\"", f.name, escape_label_value(value));
  }
  out += fmt::format("kvrdma_server_info{} 1\n", labels(stats, extra));
}

void render_stats(std::string& out, const ServerStats& stats) {
  for (const StatInfo& f : stats_fields()) {
    if (f.role == StatRole::kIdentity || f.number == nullptr) continue;
    const bool counter = f.role == StatRole::kCounter;
    const std::string name = fmt::format("kvrdma_{}{}", f.name, counter ? "_total" : "");
    family(out, name, counter ? "counter" : "gauge", f.description);
    out += fmt::format("{}{} {}\n", name, labels(stats), f.number(stats));
  }
}

// One histogram series (under an already written family header).
void render_histogram(std::string& out, std::string_view name, const std::string& series_labels,
                      const HistogramSnapshot& h) {
  // series_labels is "{...}": le goes inside the braces.
  const std::string_view inner(series_labels.data() + 1, series_labels.size() - 2);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBounds; ++i) {
    cumulative += h.buckets[i];
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, inner,
                       number(bucket_bound_seconds(i)), cumulative);
  }
  cumulative += h.buckets[kBounds];
  out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, inner, cumulative);
  out += fmt::format("{}_sum{} {}\n", name, series_labels, number(h.sum_ns / 1e9));
  out += fmt::format("{}_count{} {}\n", name, series_labels, cumulative);
}

}  // namespace

const char* op_name(Op op) { return kOpNames[static_cast<size_t>(op)]; }

double bucket_bound_seconds(size_t i) { return static_cast<double>(uint64_t{1} << i) / 1e6; }

size_t bucket_of(uint64_t ns) {
  // Bounds are whole microseconds, so ns <= 2^i us exactly when ceil(ns / 1000) <= 2^i.
  const uint64_t us = ns / 1000 + (ns % 1000 != 0);
  const size_t i = us <= 1 ? 0 : static_cast<size_t>(std::bit_width(us - 1));
  return i < kBounds ? i : kBounds;
}

void Metrics::observe(Op op, Clock::duration elapsed) {
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
  const uint64_t v = ns > 0 ? static_cast<uint64_t>(ns) : 0;
  Shard& s = shards_[static_cast<size_t>(op)][my_shard(kShards)];
  s.buckets[bucket_of(v)].fetch_add(1, std::memory_order_relaxed);
  s.sum_ns.fetch_add(v, std::memory_order_relaxed);
}

transport::Completion Metrics::timed(Op op, transport::Completion done) {
  return [this, op, start = Clock::now(), done = std::move(done)](Status s) {
    observe_since(op, start);
    done(std::move(s));
  };
}

HistogramSnapshot Metrics::snapshot(Op op) const {
  HistogramSnapshot h;
  for (const Shard& s : shards_[static_cast<size_t>(op)]) {
    for (size_t i = 0; i <= kBounds; ++i) {
      h.buckets[i] += s.buckets[i].load(std::memory_order_relaxed);
    }
    h.sum_ns += s.sum_ns.load(std::memory_order_relaxed);
  }
  for (uint64_t b : h.buckets) h.count += b;
  return h;
}

transport::Completion OpTimer::then(Op op, transport::Completion done) {
  Metrics* metrics = metrics_;
  metrics_ = nullptr;
  return [metrics, op, start = start_, done = std::move(done)](Status s) {
    metrics->observe_since(op, start);
    done(std::move(s));
  };
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string render_metrics(const ServerStats& stats, const Metrics& metrics) {
  std::string out;
  out.reserve(16 << 10);
  render_info(out, stats);
  render_stats(out, stats);
  family(out, "kvrdma_request_duration_seconds", "histogram",
         "time to serve a request, by operation (op), from the server's first look at it to "
         "its answer");
  const std::string base = labels(stats);
  for (size_t i = 0; i < static_cast<size_t>(Op::kTransportWrite); ++i) {
    const Op op = static_cast<Op>(i);
    render_histogram(out, "kvrdma_request_duration_seconds",
                     labels(stats, fmt::format("op=\"{}\"", op_name(op))), metrics.snapshot(op));
  }
  family(out, "kvrdma_transport_write_duration_seconds", "histogram",
         "time from issuing one transport write of a GET value to its completion");
  render_histogram(out, "kvrdma_transport_write_duration_seconds", base,
                   metrics.snapshot(Op::kTransportWrite));
  return out;
}

}  // namespace kvrdma::server
