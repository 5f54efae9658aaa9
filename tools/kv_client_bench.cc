// kv-client bench: prepares --keys keys (by default as many as the server's pool holds, at most
// min(--ops, 1000)), then runs --ops GET/PUT operations from --concurrency threads sharing one
// Client, and reports throughput, latency percentiles and the GET hit rate.
//
// A cache evicts: a GET of a prepared key may miss when the keys do not all fit, so a NOT_FOUND
// counts as a miss, not an error, unless the server evicted and expired nothing during the run
// (then a prepared key was lost, which is a bug).
//
// Each key's value is a window of one shared pattern, at an offset derived from the key index, so
// a GET can be checked byte for byte without storing every value. One GET in kVerifyEvery is
// checked; a mismatch counts as an error.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cli_common.h"
#include "kv_client.h"

namespace kvrdma::tools {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr uint64_t kVerifyEvery = 8;
constexpr uint64_t kPatternOffsets = 251;  // prime, so neighbouring keys differ

std::string key_name(uint64_t i) { return fmt::format("bench-{:08}", i); }

struct Shared {
  explicit Shared(const BenchConfig& c) : config(c) {}
  const BenchConfig& config;
  std::string pattern;  // value_size + kPatternOffsets bytes
  SteadyClock::time_point deadline;
  std::atomic<uint64_t> next_op{0};
  std::atomic<uint64_t> done_ops{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  std::mutex mu;
  Status first_error;  // guarded by mu

  std::string_view value_of(uint64_t key) const {
    return std::string_view(pattern).substr(key % kPatternOffsets, config.value_size);
  }
  void record_error(const Status& s) {
    errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.is_ok()) first_error = s;
  }
};

// xorshift64*: cheap per-thread randomness for key and op choice.
struct Rng {
  uint64_t state;
  uint64_t next() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ull;
  }
};

// --batch N: one get_many / put_many of N random keys per call; latency is per call.
void batch_worker(Client& client, Shared& sh, uint64_t keys, unsigned index,
                  std::vector<uint64_t>& lat) {
  Rng rng{0x9E3779B97F4A7C15ull * (index + 1)};
  const BenchConfig& cfg = sh.config;
  std::vector<uint64_t> ids(cfg.batch);
  std::vector<std::string> names(cfg.batch);
  std::vector<std::string_view> views(cfg.batch);
  std::vector<KeyValue> items(cfg.batch);
  for (;;) {
    const uint64_t first = sh.next_op.fetch_add(cfg.batch, std::memory_order_relaxed);
    if (first >= cfg.ops || SteadyClock::now() >= sh.deadline) break;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(cfg.batch, cfg.ops - first));
    for (size_t i = 0; i < n; ++i) {
      ids[i] = rng.next() % keys;
      names[i] = key_name(ids[i]);
      views[i] = names[i];
      items[i] = KeyValue{names[i], sh.value_of(ids[i])};
    }
    const bool is_put = cfg.op == "put" || (cfg.op == "mixed" && rng.next() % 10 == 0);
    const auto start = SteadyClock::now();
    if (is_put) {
      auto st = client.put_many(std::span<const KeyValue>(items.data(), n));
      lat.push_back(static_cast<uint64_t>((SteadyClock::now() - start).count()));
      for (size_t i = 0; i < n; ++i) {
        if (!st[i].is_ok()) sh.record_error(st[i].with_context(fmt::format("put {}", names[i])));
        else sh.bytes.fetch_add(cfg.value_size, std::memory_order_relaxed);
      }
    } else {
      auto got = client.get_many(std::span<const std::string_view>(views.data(), n));
      lat.push_back(static_cast<uint64_t>((SteadyClock::now() - start).count()));
      for (size_t i = 0; i < n; ++i) {
        if (!got[i]) {
          if (got[i].status().code() == Code::kNotFound) {
            sh.misses.fetch_add(1, std::memory_order_relaxed);
          } else {
            sh.record_error(got[i].status().with_context(fmt::format("get {}", names[i])));
          }
          continue;
        }
        sh.hits.fetch_add(1, std::memory_order_relaxed);
        sh.bytes.fetch_add(got[i]->size(), std::memory_order_relaxed);
        if ((first + i) % kVerifyEvery == 0 && got[i]->str() != sh.value_of(ids[i])) {
          sh.record_error(Status(Code::kInternal,
                                 fmt::format("get {}: {} bytes returned differ from the {} put",
                                             names[i], got[i]->size(), cfg.value_size)));
        }
      }
    }
    sh.done_ops.fetch_add(n, std::memory_order_relaxed);
  }
}

// --pipeline N: keeps N get_async / put_async outstanding; waits for the oldest, submits another.
void pipeline_worker(Client& client, Shared& sh, uint64_t keys, unsigned index,
                     std::vector<uint64_t>& lat) {
  Rng rng{0x9E3779B97F4A7C15ull * (index + 1)};
  const BenchConfig& cfg = sh.config;
  struct InFlight {
    kvrdma::Pending pending;
    uint64_t op, key;
    bool is_put;
    SteadyClock::time_point start;
  };
  std::deque<InFlight> window;
  auto settle = [&](InFlight& f) {
    auto r = f.pending.wait();
    lat.push_back(static_cast<uint64_t>((SteadyClock::now() - f.start).count()));
    // The key's name only for an error: formatting it for every answer cost ~4% at 1.2M ops/s.
    auto name = [&] { return key_name(f.key); };
    if (!r && !f.is_put && r.status().code() == Code::kNotFound) {
      sh.misses.fetch_add(1, std::memory_order_relaxed);
    } else if (!r) {
      sh.record_error(
          r.status().with_context(fmt::format("{} {}", f.is_put ? "put" : "get", name())));
    } else if (f.is_put) {
      sh.bytes.fetch_add(cfg.value_size, std::memory_order_relaxed);
    } else {
      sh.hits.fetch_add(1, std::memory_order_relaxed);
      sh.bytes.fetch_add(r->size(), std::memory_order_relaxed);
      if (f.op % kVerifyEvery == 0 && *r != sh.value_of(f.key)) {
        sh.record_error(
            Status(Code::kInternal, fmt::format("get {}: {} bytes returned differ from the {} put",
                                                name(), r->size(), cfg.value_size)));
      }
    }
    sh.done_ops.fetch_add(1, std::memory_order_relaxed);
  };
  for (;;) {
    const uint64_t op = sh.next_op.fetch_add(1, std::memory_order_relaxed);
    if (op >= cfg.ops || SteadyClock::now() >= sh.deadline) break;
    if (window.size() >= cfg.pipeline) {
      settle(window.front());
      window.pop_front();
    }
    InFlight f;
    f.op = op;
    f.key = rng.next() % keys;
    f.is_put = cfg.op == "put" || (cfg.op == "mixed" && rng.next() % 10 == 0);
    f.start = SteadyClock::now();
    const std::string name = key_name(f.key);
    f.pending = f.is_put ? client.put_async(name, sh.value_of(f.key)) : client.get_async(name);
    window.push_back(std::move(f));
  }
  for (InFlight& f : window) settle(f);
}

void worker(Client& client, Shared& sh, uint64_t keys, unsigned index, std::vector<uint64_t>& lat) {
  if (sh.config.batch > 1) return batch_worker(client, sh, keys, index, lat);
  if (sh.config.pipeline > 1) return pipeline_worker(client, sh, keys, index, lat);
  Rng rng{0x9E3779B97F4A7C15ull * (index + 1)};
  const BenchConfig& cfg = sh.config;
  for (;;) {
    const uint64_t op = sh.next_op.fetch_add(1, std::memory_order_relaxed);
    if (op >= cfg.ops || SteadyClock::now() >= sh.deadline) break;
    const uint64_t key = rng.next() % keys;
    const std::string name = key_name(key);
    const bool is_put = cfg.op == "put" || (cfg.op == "mixed" && rng.next() % 10 == 0);
    const auto start = SteadyClock::now();
    if (is_put) {
      const Status s = client.put(name, sh.value_of(key));
      lat.push_back(static_cast<uint64_t>((SteadyClock::now() - start).count()));
      if (!s.is_ok()) sh.record_error(s.with_context(fmt::format("put {}", name)));
      else sh.bytes.fetch_add(cfg.value_size, std::memory_order_relaxed);
    } else {
      auto v = client.get(name);
      lat.push_back(static_cast<uint64_t>((SteadyClock::now() - start).count()));
      if (!v && v.status().code() == Code::kNotFound) {
        sh.misses.fetch_add(1, std::memory_order_relaxed);
      } else if (!v) {
        sh.record_error(v.status().with_context(fmt::format("get {}", name)));
      } else {
        sh.hits.fetch_add(1, std::memory_order_relaxed);
        sh.bytes.fetch_add(v->size(), std::memory_order_relaxed);
        if (op % kVerifyEvery == 0 && v->str() != sh.value_of(key)) {
          sh.record_error(Status(Code::kInternal,
                                 fmt::format("get {}: {} bytes returned differ from the {} put",
                                             name, v->size(), cfg.value_size)));
        }
      }
    }
    sh.done_ops.fetch_add(1, std::memory_order_relaxed);
  }
}

// Prints "\r<progress>" on stderr ~4 times a second until stopped.
class Progress {
 public:
  Progress(Shared& sh, bool enabled) : sh_(sh) {
    if (enabled) thread_ = std::thread([this] { loop(); });
  }
  ~Progress() { stop(); }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) {
      thread_.join();
      std::fputs("\r\033[K", stderr);
    }
  }

 private:
  void loop() {
    const auto start = SteadyClock::now();
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(250), [this] { return stop_; })) {
      const double s = std::chrono::duration<double>(SteadyClock::now() - start).count();
      const uint64_t done = sh_.done_ops.load();
      fmt::print(stderr, "\rbench: {}/{} ops, {:.0f} ops/s, {} errors\033[K", done, sh_.config.ops,
                 s > 0 ? done / s : 0.0, sh_.errors.load());
      std::fflush(stderr);
    }
  }
  Shared& sh_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

double percentile_us(const std::vector<uint64_t>& sorted_ns, double p) {
  if (sorted_ns.empty()) return 0;
  const size_t i = std::min(sorted_ns.size() - 1, static_cast<size_t>(p * sorted_ns.size()));
  return sorted_ns[i] / 1000.0;
}

// Pool space one value takes: values of a page or more get page-aligned extents (MemoryPool).
uint64_t footprint(uint64_t value_size) {
  constexpr uint64_t kPage = 4096;
  if (value_size < kPage) return std::max<uint64_t>(value_size, 1);
  return (value_size + kPage - 1) / kPage * kPage;
}

// The key count and why: --keys as given, else min(ops, 1000) capped by what the servers' pools
// hold with a quarter spare (the allocator's fragmentation, other clients' values).
std::pair<uint64_t, std::string> choose_keys(Client& client, const BenchConfig& config) {
  if (config.keys > 0) return {config.keys, "--keys"};
  const uint64_t wanted = std::max<uint64_t>(1, std::min<uint64_t>(config.ops, 1000));
  uint64_t pool = 0;
  if (auto info = client.cluster(); info) {
    for (const ClusterNodeStatus& n : info->nodes) pool += n.reachable ? n.pool_bytes : 0;
  }
  if (pool == 0) {
    auto stats = client.stats();
    if (!stats) return {wanted, "default; server pool size unknown"};
    pool = stats->pool_bytes;
  }
  const uint64_t fit = std::max<uint64_t>(1, pool / 4 * 3 / footprint(config.value_size));
  if (fit >= wanted) return {wanted, "default"};
  return {fit, fmt::format("what 3/4 of the server's {} pool holds; set --keys to override",
                           format_bytes(pool))};
}

// Evictions plus expirations on the server the client asks first, or nullopt when unknown (no
// answer, or cluster mode, where the other nodes evict too).
std::optional<uint64_t> removals(Client& client) {
  auto stats = client.stats();
  if (!stats || !stats->cluster.empty()) return std::nullopt;
  return stats->evictions + stats->expirations;
}

}  // namespace

int run_bench(Client& client, const BenchConfig& config) {
  const std::string prefix = "kv-client bench";
  const auto chosen = choose_keys(client, config);
  const uint64_t keys = chosen.first;
  const std::string& keys_why = chosen.second;
  const std::optional<uint64_t> removals_before = removals(client);
  Shared sh(config);
  sh.pattern.resize(config.value_size + kPatternOffsets);
  for (size_t i = 0; i < sh.pattern.size(); ++i) {
    sh.pattern[i] = static_cast<char>((i * 131 + (i >> 8)) & 0xff);
  }
  const auto budget = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(config.duration_s));
  sh.deadline = SteadyClock::now() + budget;

  // Prepare: every key holds its value, and one is read back to catch a broken path early.
  for (uint64_t k = 0; k < keys; ++k) {
    if (SteadyClock::now() >= sh.deadline) {
      return report_error(prefix,
                          Status(Code::kDeadlineExceeded,
                                 fmt::format("preparing {} keys took longer than --duration "
                                             "{}s; raise it or lower --keys",
                                             keys, config.duration_s)));
    }
    const Status s = client.put(key_name(k), sh.value_of(k));
    if (!s.is_ok())
      return report_error(prefix, s.with_context(fmt::format("preparing {}", key_name(k))));
  }
  auto check = client.get(key_name(keys - 1));
  if (!check)
    return report_error(prefix, check.status().with_context("reading back a prepared key"));
  if (check->str() != sh.value_of(keys - 1)) {
    return report_error(prefix, Status(Code::kInternal,
                                       "a prepared value read back differs from "
                                       "what was put; the data path is broken"));
  }
  check->release();

  sh.deadline = SteadyClock::now() + budget;
  std::vector<std::vector<uint64_t>> latencies(config.concurrency);
  const uint64_t expected_per_thread =
      std::min<uint64_t>(config.ops, 1u << 20) / config.concurrency;
  for (auto& l : latencies) l.reserve(expected_per_thread + 1);  // grows past 1Mi ops if needed
  const auto start = SteadyClock::now();
  {
    Progress progress(sh, is_terminal(1));
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < config.concurrency; ++t) {
      threads.emplace_back([&, t] { worker(client, sh, keys, t, latencies[t]); });
    }
    for (auto& th : threads) th.join();
  }
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();

  std::vector<uint64_t> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  const uint64_t ops = sh.done_ops.load();  // with --batch, `all` holds one latency per call
  const double ops_per_sec = seconds > 0 ? ops / seconds : 0;
  const double bytes_per_sec = seconds > 0 ? sh.bytes.load() / seconds : 0;
  const double p50 = percentile_us(all, 0.50), p99 = percentile_us(all, 0.99);
  const double max = all.empty() ? 0 : all.back() / 1000.0;
  const uint64_t hits = sh.hits.load(), misses = sh.misses.load();
  const double hit_rate = hits + misses > 0 ? double(hits) / double(hits + misses) : 1.0;
  // Misses are legitimate only when the server removed values; if it removed none, a prepared
  // key vanished.
  const std::optional<uint64_t> removals_after = misses > 0 ? removals(client) : std::nullopt;
  if (misses > 0 && removals_before && removals_after && *removals_after == *removals_before) {
    sh.record_error(
        Status(Code::kNotFound, fmt::format("{} GETs missed keys the bench had put, yet the server "
                                            "evicted and expired nothing; a value was lost",
                                            misses)));
  }
  const uint64_t errors = sh.errors.load();

  if (config.json) {
    fmt::print(
        "{{\"op\": \"{}\", \"ops\": {}, \"seconds\": {:.6f}, \"ops_per_sec\": {:.1f}, "
        "\"bytes_per_sec\": {:.1f}, \"p50_us\": {:.1f}, \"p99_us\": {:.1f}, \"max_us\": {:.1f}, "
        "\"errors\": {}, \"value_size\": {}, \"concurrency\": {}, \"keys\": {}, "
        "\"batch\": {}, \"pipeline\": {}, \"hits\": {}, \"misses\": {}, \"hit_rate\": {:.4f}}}\n",
        config.op, ops, seconds, ops_per_sec, bytes_per_sec, p50, p99, max, errors,
        config.value_size, config.concurrency, keys, config.batch, config.pipeline, hits, misses,
        hit_rate);
  } else {
    fmt::print("bench: op {}, value {}{}, concurrency {}, keys {} ({}){}\n", config.op,
               format_bytes(config.value_size),
               config.value_size >= 1024 ? fmt::format(" ({} B)", config.value_size) : "",
               config.concurrency, keys, keys_why,
               config.batch > 1      ? fmt::format(", batch {} (latency per call)", config.batch)
               : config.pipeline > 1 ? fmt::format(", pipeline {}", config.pipeline)
                                     : "");
    fmt::print("  ops          {}{}\n", ops, ops < config.ops ? " (stopped by --duration)" : "");
    fmt::print("  seconds      {:.3f}\n", seconds);
    fmt::print("  ops/s        {:.0f}\n", ops_per_sec);
    fmt::print("  MB/s         {:.1f}\n", bytes_per_sec / 1e6);
    fmt::print("  latency us   p50 {:.1f}  p99 {:.1f}  max {:.1f}\n", p50, p99, max);
    if (hits + misses > 0) {
      fmt::print("  hit rate     {:.1f}% ({} hits, {} misses)\n", hit_rate * 100, hits, misses);
    }
    fmt::print("  errors       {}\n", errors);
  }
  std::fflush(stdout);
  if (errors > 0) {
    std::lock_guard<std::mutex> lock(sh.mu);
    const Status first = sh.first_error;
    report_error(prefix,
                 first.with_context(fmt::format("{} of {} ops failed; first", errors, ops)));
    return kExitError;  // failed ops are an error even when the first was NOT_FOUND (lost key)
  }
  return kExitOk;
}

}  // namespace kvrdma::tools
