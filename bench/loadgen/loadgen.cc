// kvrdma-loadgen: drives one system (kvrdma, Redis over RESP2, memcached over its text protocol)
// with N workers, each a thread with its own connection keeping one request (or, with --pipeline P,
// P requests) in flight, and prints one JSON line per case (op x value size x workers): ops/s,
// GB/s, p50/p99 latency. `--probe memcpy` instead measures single-thread memcpy bandwidth on
// buffers far larger than the last-level cache.
//
// Every case is bounded: a warm-up (--warmup-ms, and until every worker has finished one request),
// then a measured window that ends at --duration-ms or after --max-ops operations, whichever comes
// first. Every GET is verified (length and spot bytes), pipelined or not; every PUT's answer too.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "cli_common.h"

#include "driver.h"

namespace kvrdma::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct Args {
  std::string system = "kvrdma", label, addr, provider = "auto";
  bool mock = true;
  std::vector<uint64_t> sizes{64, 4096};
  std::vector<std::string> ops{"put", "get"};
  std::vector<int> inflight{1, 16};
  int64_t duration_ms = 1000, warmup_ms = 200, max_ops = 200000;
  uint64_t key_budget = 64ull << 20;  // bytes of values per size; bounds memory for big values
  int batch = 1;                      // GETs per request (RESP pipelining; kvrdma get_many)
  bool shared_client = true;          // kvrdma: one Client for every worker
  int pipeline = 1;                   // requests each worker keeps in flight (put and get)
  bool eager_writes = false;          // resp, memcached pipelining: one write per request
  std::string probe;
};

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto c = s.find(',');
    out.emplace_back(s.substr(0, c));
    s = c == std::string_view::npos ? std::string_view() : s.substr(c + 1);
  }
  return out;
}

// One entry of --sizes through the project's size parser; a bad one ends the run (usage, 2).
uint64_t parse_size(const std::string& s) {
  auto v = parse_bytes(s);
  if (!v) {
    fmt::print(stderr, "kvrdma-loadgen: --sizes: {}\n", v.status().message());
    std::exit(2);
  }
  return *v;
}

constexpr const char* kUsage =
    "usage: kvrdma-loadgen --system kvrdma|resp|memcached --addr HOST:PORT [--label NAME]\n"
    "  [--mock true|false] [--provider shm|tcp] [--sizes 64,4k,1m] [--ops put,get]\n"
    "  (--ops also takes put_from,get_into: kvrdma from / into registered blocks)\n"
    "  [--inflight 1,16] [--duration-ms 1000] [--warmup-ms 200] [--max-ops 200000]\n"
    "  [--key-budget-mb 64] [--batch 1] [--kvrdma-clients shared|per-worker]\n"
    "  [--pipeline 1] [--socket-writes lazy|eager]\n"
    "  (--pipeline P: each worker keeps P put/get in flight; not with --batch or caller memory)\n"
    "       kvrdma-loadgen --probe memcpy\n";

bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) return false;
    std::string v = argv[++i];
    if (k == "--system") a.system = v;
    else if (k == "--label") a.label = v;
    else if (k == "--addr") a.addr = v;
    else if (k == "--mock") a.mock = (v == "true" || v == "1");
    else if (k == "--provider") a.provider = v;
    else if (k == "--sizes") {
      a.sizes.clear();
      for (auto& s : split(v)) a.sizes.push_back(parse_size(s));
    } else if (k == "--ops") a.ops = split(v);
    else if (k == "--inflight") {
      a.inflight.clear();
      for (auto& s : split(v)) a.inflight.push_back(std::stoi(s));
    } else if (k == "--duration-ms") a.duration_ms = std::stoll(v);
    else if (k == "--warmup-ms") a.warmup_ms = std::stoll(v);
    else if (k == "--max-ops") a.max_ops = std::stoll(v);
    else if (k == "--key-budget-mb") a.key_budget = std::stoull(v) << 20;
    else if (k == "--batch") a.batch = std::max(1, std::stoi(v));
    else if (k == "--probe") a.probe = v;
    else if (k == "--pipeline") a.pipeline = std::max(1, std::stoi(v));
    else if (k == "--socket-writes" && (v == "lazy" || v == "eager")) a.eager_writes = v == "eager";
    else if (k == "--kvrdma-clients" && (v == "shared" || v == "per-worker")) {
      a.shared_client = v == "shared";
    } else return false;
  }
  if (a.label.empty()) a.label = a.system;
  if (a.pipeline > 1) {
    const bool plain = std::all_of(a.ops.begin(), a.ops.end(), [](const std::string& op) {
      return op == "put" || op == "get";
    });
    if (!plain || a.batch > 1) {
      fmt::print(stderr, "kvrdma-loadgen: --pipeline applies to --ops put,get without --batch\n");
      return false;
    }
  }
  return true;
}

// Single-thread memcpy bandwidth: 256 MiB buffers (beyond any LLC here), pages touched first,
// best of 5 copies. GB/s counts the bytes copied (not read + written).
void probe_memcpy() {
  constexpr size_t kBytes = 256ull << 20;
  std::vector<char> src(kBytes, 1), dst(kBytes, 2);
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    auto t0 = SteadyClock::now();
    std::memcpy(dst.data(), src.data(), kBytes);
    double s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    best = std::max(best, kBytes / s / 1e9);
  }
  fmt::print("{{\"probe\":\"memcpy\",\"bytes\":{},\"gbps\":{:.3f},\"check\":{}}}\n", kBytes, best,
             int(dst[kBytes / 2]));
}

Result<std::vector<std::unique_ptr<Driver>>> make_drivers(const Args& a, uint64_t max_size,
                                                          int workers) {
  DriverConfig c{a.system,
                 a.addr,
                 a.mock,
                 a.provider,
                 std::max<uint64_t>(8ull << 20, 2 * max_size * a.batch + (1ull << 20)),
                 a.eager_writes};
  if (a.system == "kvrdma") return make_kvrdma_drivers(c, workers, a.shared_client);
  std::vector<std::unique_ptr<Driver>> drivers;
  for (int i = 0; i < workers; ++i) {
    Result<std::unique_ptr<Driver>> d =
        Status(Code::kInvalidArgument, fmt::format("unknown --system '{}'", a.system));
    if (a.system == "resp") d = make_resp_driver(c);
    if (a.system == "memcached") d = make_memcached_driver(c);
    if (!d) return d.status();
    drivers.push_back(std::move(d).value());
  }
  return drivers;
}

// The keys of one value size and the bytes each holds: key i holds pattern[i % 251, +size).
struct Dataset {
  uint64_t size = 0;
  std::string pattern;
  std::vector<std::string> keys;
  std::string_view value(size_t i) const { return std::string_view(pattern).substr(i % 251, size); }
};

Dataset make_dataset(uint64_t size, uint64_t budget) {
  Dataset d;
  d.size = size;
  d.pattern.resize(size + 251);
  for (size_t j = 0; j < d.pattern.size(); ++j) d.pattern[j] = static_cast<char>('a' + j % 23);
  for (size_t j = 0; j < d.pattern.size(); j += 4093) d.pattern[j] = static_cast<char>(j * 7);
  size_t n = std::clamp<uint64_t>(budget / std::max<uint64_t>(size, 1), 4, 1024);
  for (size_t i = 0; i < n; ++i) d.keys.push_back(fmt::format("lg:{}:{}", size, i));
  return d;
}

struct CaseResult {
  uint64_t ops = 0;
  double seconds = 0;
  std::vector<uint32_t> lat_ns;  // per request (a batch counts as one request)
  std::string error;
};

int64_t ns_of(SteadyClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

uint32_t clamp_ns(SteadyClock::duration d) {
  return static_cast<uint32_t>(
      std::min<int64_t>(UINT32_MAX,
                        std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()));
}

// The measured window of one case, shared by its workers. It opens when the warm-up time is over
// AND every worker has finished one request: a cold first request (first touch of fresh buffers:
// 16 MiB x 16 takes over a second on a fresh VM) never lands in the window.
struct CaseWindow {
  int workers = 0;
  std::atomic<int> warmed{0};
  std::atomic<int64_t> start_ns{0};  // nanoseconds since SteadyClock's epoch; 0: not open yet
};

// One worker's view of the window. Bounds: a warm-up that never completes, and a worker slower
// than the window (which still completes one measured request, so a row is never empty): four
// windows plus 10 s.
struct WorkerClock {
  WorkerClock(CaseWindow& w, const Args& a)
      : shared(w),
        warm_min(SteadyClock::now() + std::chrono::milliseconds(a.warmup_ms)),
        window(std::chrono::milliseconds(a.duration_ms)),
        hard_end(warm_min + 4 * window + std::chrono::seconds(10)) {}

  // Picks up the window's opening.
  void poll() {
    if (open) return;
    if (int64_t ns = shared.start_ns.load(std::memory_order_acquire); ns != 0) {
      start = SteadyClock::time_point(std::chrono::nanoseconds(ns));
      end = start + window;
      open = true;
    }
  }
  // After each finished request (a failed one counts too: its row reports the error, nobody
  // waits): the last worker to finish its first one opens the window.
  void request_done(SteadyClock::time_point at) {
    if (!first) return;
    first = false;
    if (shared.warmed.fetch_add(1) + 1 == shared.workers) {
      shared.start_ns.store(ns_of(std::max(at, warm_min)), std::memory_order_release);
    }
  }
  bool past_end(SteadyClock::time_point t, uint64_t ops) const {
    return t >= hard_end || (open && t >= end && ops > 0);
  }
  bool in_window(SteadyClock::time_point t) const { return open && t >= start; }

  CaseWindow& shared;
  const SteadyClock::time_point warm_min;
  const SteadyClock::duration window;
  const SteadyClock::time_point hard_end;
  SteadyClock::time_point start{}, end{};
  bool open = false, first = true;
};

// One request at a time (a batch of --batch GETs counts as one request, `batch` operations).
void run_blocking(const Args& a, Driver& drv, const Dataset& d, const std::string& op, size_t k,
                  uint64_t max_ops, WorkerClock& clk, CaseResult& r) {
  const bool is_get = op == "get" || op == "get_into";
  std::vector<std::string_view> keys(a.batch);
  std::vector<Expect> expects(a.batch);
  auto last = SteadyClock::now();
  while (r.ops < max_ops) {
    auto t1 = SteadyClock::now();
    clk.poll();
    if (clk.past_end(t1, r.ops)) break;
    Status s;
    int n = op == "get" ? a.batch : 1;
    for (int b = 0; b < n; ++b, ++k) {
      keys[b] = d.keys[k % d.keys.size()];
      expects[b] = Expect{d.value(k % d.keys.size())};
    }
    if (op == "put_from") s = drv.put_from(keys[0], (k - 1) % d.keys.size() % 251, d.size);
    else if (op == "get_into") s = drv.get_into(keys[0], expects[0]);
    else if (!is_get) s = drv.put(keys[0], expects[0].value);
    else if (n == 1) s = drv.get(keys[0], expects[0]);
    else s = drv.get_batch({keys.data(), size_t(n)}, {expects.data(), size_t(n)});
    last = SteadyClock::now();
    clk.request_done(last);
    if (!s.is_ok()) {
      r.error = s.message();
      break;
    }
    if (clk.in_window(t1)) {
      r.ops += n;
      r.lat_ns.push_back(clamp_ns(last - t1));
    }
  }
  r.seconds = clk.open ? std::chrono::duration<double>(last - clk.start).count() : 0;
}

// --pipeline P: keeps P requests outstanding on this worker's connection; completes (and
// verifies) the oldest, then submits the next. Latency runs from a request's submit to its
// verified answer; a request counts when it completes inside the window. After a failure the
// requests still outstanding are completed (their outcome ignored) so the connection is in step
// for the next case.
void run_pipelined(const Args& a, Driver& drv, const Dataset& d, bool is_get, size_t k,
                   uint64_t max_ops, WorkerClock& clk, CaseResult& r) {
  struct Outstanding {
    size_t key;
    SteadyClock::time_point submitted;
  };
  std::deque<Outstanding> ring;
  Status failed;
  auto t = SteadyClock::now(), last = t;  // one clock read per completion, reused by the submit
  for (;;) {
    clk.poll();
    const bool stop =
        !failed.is_ok() || clk.past_end(t, r.ops) || (clk.open && r.ops + ring.size() >= max_ops);
    if (!stop && ring.size() < static_cast<size_t>(a.pipeline)) {
      const size_t i = k++ % d.keys.size();
      Status s = is_get ? drv.submit_get(d.keys[i]) : drv.submit_put(d.keys[i], d.value(i));
      if (s.is_ok()) {
        ring.push_back({i, t});
      } else {
        failed = s;
        clk.request_done(t);  // as a failed request: the other workers are not kept waiting
      }
      continue;
    }
    if (ring.empty()) break;
    const Outstanding o = ring.front();
    ring.pop_front();
    const Expect e{d.value(o.key)};
    Status s = drv.complete(d.keys[o.key], is_get ? &e : nullptr);
    t = last = SteadyClock::now();
    clk.request_done(last);
    if (!s.is_ok()) {
      if (failed.is_ok()) failed = s;
    } else if (failed.is_ok() && clk.in_window(last)) {
      ++r.ops;
      r.lat_ns.push_back(clamp_ns(last - o.submitted));
    }
  }
  if (!failed.is_ok()) r.error = failed.message();
  r.seconds = clk.open ? std::chrono::duration<double>(last - clk.start).count() : 0;
}

// `op`: put, get (batched with --batch), put_from or get_into (caller memory, kvrdma only).
// `inflight` workers, each a thread on its own driver.
CaseResult run_case(const Args& a, std::vector<std::unique_ptr<Driver>>& drivers, const Dataset& d,
                    const std::string& op, int inflight) {
  CaseResult total;
  std::vector<CaseResult> per(inflight);
  std::barrier start(inflight);
  const uint64_t per_thread_ops = std::max<int64_t>(1, a.max_ops / inflight);
  CaseWindow window;
  window.workers = inflight;
  std::vector<std::thread> threads;
  for (int w = 0; w < inflight; ++w) {
    threads.emplace_back([&, w] {
      CaseResult& r = per[w];
      r.lat_ns.reserve(std::min<uint64_t>(per_thread_ops, 1 << 20));
      const size_t k = static_cast<size_t>(w) * 7919;
      start.arrive_and_wait();
      WorkerClock clk(window, a);
      if (a.pipeline > 1) {
        run_pipelined(a, *drivers[w], d, op == "get", k, per_thread_ops, clk, r);
      } else {
        run_blocking(a, *drivers[w], d, op, k, per_thread_ops, clk, r);
      }
      if (!clk.open && r.error.empty()) r.error = "the warm-up did not finish in time";
    });
  }
  for (auto& t : threads) t.join();
  for (auto& r : per) {
    total.ops += r.ops;
    total.seconds = std::max(total.seconds, r.seconds);
    total.lat_ns.insert(total.lat_ns.end(), r.lat_ns.begin(), r.lat_ns.end());
    if (total.error.empty()) total.error = r.error;
  }
  return total;
}

double percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * v.size()));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  return v[i] / 1000.0;
}

int run(const Args& a) {
  uint64_t max_size = *std::max_element(a.sizes.begin(), a.sizes.end());
  int max_inflight = *std::max_element(a.inflight.begin(), a.inflight.end());
  auto made = make_drivers(a, max_size, max_inflight);
  if (!made) {
    fmt::print(stderr, "kvrdma-loadgen: {} connect {}: {}\n", a.label, a.addr,
               made.status().message());
    return 1;
  }
  std::vector<std::unique_ptr<Driver>> drivers = std::move(made).value();
  int failures = 0;
  for (uint64_t size : a.sizes) {
    Dataset d = make_dataset(size, a.key_budget);
    for (size_t i = 0; i < d.keys.size(); ++i) {  // GET rows read keys that exist
      if (auto s = drivers[0]->put(d.keys[i], d.value(i)); !s.is_ok()) {
        fmt::print(stderr, "kvrdma-loadgen: {} preload size {}: {}\n", a.label, size, s.message());
        return 1;
      }
    }
    for (const auto& op : a.ops) {
      if (op != "put_from" && op != "get_into") continue;
      for (auto& drv : drivers) {  // not timed: the blocks are allocated and filled here
        if (auto s = drv->prepare_block(d.pattern, d.size); !s.is_ok()) {
          fmt::print(stderr, "kvrdma-loadgen: {} {} size {}: {}\n", a.label, op, size, s.message());
          return 1;
        }
      }
      break;
    }
    for (int inflight : a.inflight) {
      for (const auto& op : a.ops) {
        CaseResult r = run_case(a, drivers, d, op, inflight);
        double ops_s = r.seconds > 0 ? r.ops / r.seconds : 0;
        fmt::print(
            "{{\"system\":\"{}\",\"op\":\"{}\",\"size\":{},\"inflight\":{},\"pipeline\":{},"
            "\"batch\":{},"
            "\"keys\":{},\"ops\":{},\"seconds\":{:.4f},\"ops_per_s\":{:.1f},\"gbps\":{:.4f},"
            "\"p50_us\":{:.1f},\"p99_us\":{:.1f},\"verified\":{},\"error\":\"{}\"}}\n",
            a.label, op, size, inflight, a.pipeline, op == "get" ? a.batch : 1, d.keys.size(),
            r.ops, r.seconds, ops_s, ops_s * size / 1e9, percentile(r.lat_ns, 0.50),
            percentile(r.lat_ns, 0.99),
            r.error.empty() && (op == "get" || op == "get_into") ? "true" : "false", r.error);
        std::fflush(stdout);
        if (!r.error.empty()) ++failures;
      }
    }
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace kvrdma::bench

int main(int argc, char** argv) {
  kvrdma::tools::tune_process();  // the allocator and Abseil settings kv-client runs with
  kvrdma::bench::Args a;
  if (!kvrdma::bench::parse_args(argc, argv, a)) {
    fmt::print(stderr, "{}", kvrdma::bench::kUsage);
    return 2;
  }
  if (a.probe == "memcpy") {
    kvrdma::bench::probe_memcpy();
    return 0;
  }
  if (a.addr.empty()) {
    fmt::print(stderr, "kvrdma-loadgen: --addr is required\n{}", kvrdma::bench::kUsage);
    return 2;
  }
  return kvrdma::bench::run(a);
}
