// The metrics renderer and histograms (lib/server/metrics.{h,cc}), without a server.
#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kvrdma/server.h"
#include "server/metrics.h"

using namespace kvrdma;
using namespace kvrdma::server;
using std::chrono::microseconds;
using std::chrono::nanoseconds;

namespace {

// The sample lines of `text` (comments skipped): "name{labels}" -> value text.
std::map<std::string, std::string> samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = line.substr(space + 1);
  }
  return out;
}

std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  }
  return out;
}

}  // namespace

TEST_CASE("metrics: bucket_of puts an observation in the first bucket whose bound holds it",
          "[metrics]") {
  CHECK(bucket_of(0) == 0);
  CHECK(bucket_of(1) == 0);
  CHECK(bucket_of(1000) == 0);  // exactly 1 us: le="1e-06"
  CHECK(bucket_of(1001) == 1);  // just above: le="2e-06"
  CHECK(bucket_of(2000) == 1);
  CHECK(bucket_of(2001) == 2);
  CHECK(bucket_of(4000) == 2);
  CHECK(bucket_of(4001) == 3);
  CHECK(bucket_of(uint64_t{1} << 20) == 11);  // 1048.576 us <= 2048 us
  CHECK(bucket_of((uint64_t{1} << (kBounds - 1)) * 1000) == kBounds - 1);
  CHECK(bucket_of((uint64_t{1} << (kBounds - 1)) * 1000 + 1) == kBounds);  // +Inf
  CHECK(bucket_of(UINT64_MAX) == kBounds);
  CHECK(bucket_bound_seconds(0) == 1e-6);
  CHECK(bucket_bound_seconds(10) == 1024e-6);
}

TEST_CASE("metrics: label values and help texts are escaped as the text format asks", "[metrics]") {
  CHECK(escape_label_value("plain") == "plain");
  CHECK(escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  CHECK(escape_help("say \"hi\"\\\n") == "say \"hi\"\\\\\\n");
  ServerStats st;
  st.node_id = 7;
  st.cluster = "c\"1";
  st.transport = "fabric/tcp;ofi_rxm\n\\";
  Metrics m;
  const std::string text = render_metrics(st, m);
  auto info = lines_starting(text, "kvrdma_server_info{");
  REQUIRE(info.size() == 1);
  CHECK(info[0].find("node_id=\"7\",cluster=\"c\\\"1\",") != std::string::npos);
  CHECK(info[0].find(",transport=\"fabric/tcp;ofi_rxm\\n\\\\\"") != std::string::npos);
  CHECK(info[0].substr(info[0].size() - 2) == " 1");
}

TEST_CASE("metrics: histogram buckets are cumulative and +Inf equals the count", "[metrics]") {
  Metrics m;
  m.observe(Op::kGetInline, microseconds(1));            // bucket 0
  m.observe(Op::kGetInline, microseconds(3));            // bucket 2
  m.observe(Op::kGetInline, microseconds(3));            // bucket 2
  m.observe(Op::kGetInline, std::chrono::seconds(100));  // +Inf
  m.observe(Op::kTransportWrite, nanoseconds(1500));     // bucket 1
  HistogramSnapshot h = m.snapshot(Op::kGetInline);
  CHECK(h.count == 4);
  CHECK(h.buckets[0] == 1);
  CHECK(h.buckets[2] == 2);
  CHECK(h.buckets[kBounds] == 1);
  CHECK(h.sum_ns == 100'000'007'000);
  CHECK(m.snapshot(Op::kDelete).count == 0);

  ServerStats st;
  st.node_id = 3;
  const auto s = samples(render_metrics(st, m));
  const std::string get = "kvrdma_request_duration_seconds_bucket{node_id=\"3\",op=\"get_inline\",";
  CHECK(s.at(get + "le=\"1e-06\"}") == "1");
  CHECK(s.at(get + "le=\"2e-06\"}") == "1");
  CHECK(s.at(get + "le=\"4e-06\"}") == "3");
  CHECK(s.at(get + "le=\"8.388608\"}") == "3");
  CHECK(s.at(get + "le=\"+Inf\"}") == "4");
  CHECK(s.at("kvrdma_request_duration_seconds_count{node_id=\"3\",op=\"get_inline\"}") == "4");
  CHECK(s.at("kvrdma_request_duration_seconds_sum{node_id=\"3\",op=\"get_inline\"}") ==
        "100.000007");
  // Every op has its series, empty ones included; the transport writes have their own family.
  for (const char* op : {"get_inline", "get_written", "put_inline", "put_two_phase", "delete",
                         "get_batch", "put_batch"}) {
    const std::string series = fmt::format("{{node_id=\"3\",op=\"{}\"}}", op);
    INFO(op);
    CHECK(s.count("kvrdma_request_duration_seconds_count" + series) == 1);
  }
  CHECK(s.at("kvrdma_transport_write_duration_seconds_bucket{node_id=\"3\",le=\"1e-06\"}") == "0");
  CHECK(s.at("kvrdma_transport_write_duration_seconds_bucket{node_id=\"3\",le=\"2e-06\"}") == "1");
  CHECK(s.at("kvrdma_transport_write_duration_seconds_count{node_id=\"3\"}") == "1");
  // Cumulative: no bucket of any series below the one before it.
  std::istringstream in(render_metrics(st, m));
  std::string prev_series;
  uint64_t prev = 0;
  for (std::string line; std::getline(in, line);) {
    const size_t le = line.find(",le=\"");
    if (line.find("_bucket{") == std::string::npos || le == std::string::npos) continue;
    const std::string series = line.substr(0, le);
    const uint64_t v = std::stoull(line.substr(line.rfind(' ') + 1));
    if (series == prev_series) CHECK(v >= prev);
    prev_series = series;
    prev = v;
  }
}

TEST_CASE("metrics: every stats figure is one family, typed by its role", "[metrics]") {
  ServerStats st;
  st.node_id = 1;
  st.gets = 42;
  st.keys = 5;
  const std::string text = render_metrics(st, Metrics{});
  for (const StatInfo& f : stats_fields()) {
    INFO(f.name);
    if (f.role == StatRole::kIdentity) {
      CHECK(text.find(fmt::format("# TYPE kvrdma_{} ", f.name)) == std::string::npos);
      continue;
    }
    const bool counter = f.role == StatRole::kCounter;
    const std::string name = fmt::format("kvrdma_{}{}", f.name, counter ? "_total" : "");
    CHECK(text.find(fmt::format("# TYPE {} {}\n", name, counter ? "counter" : "gauge")) !=
          std::string::npos);
    CHECK(text.find(fmt::format("# HELP {} ", name)) != std::string::npos);
    CHECK(text.find(fmt::format("\n{}{{node_id=\"1\"}} {}\n", name, f.number(st))) !=
          std::string::npos);
  }
  CHECK(text.find("\nkvrdma_gets_total{node_id=\"1\"} 42\n") != std::string::npos);
  CHECK(text.find("\nkvrdma_keys{node_id=\"1\"} 5\n") != std::string::npos);
  CHECK(text.find("cluster=") == std::string::npos);  // not in cluster mode
  CHECK(text.back() == '\n');
}

TEST_CASE("metrics: OpTimer records once, under the op its completion names when handed on",
          "[metrics]") {
  Metrics m;
  { OpTimer t(m, Op::kPutInline); }
  CHECK(m.snapshot(Op::kPutInline).count == 1);
  transport::Completion later;
  {
    OpTimer t(m, Op::kGetInline);
    later = t.then(Op::kGetWritten, [](Status) {});
  }
  CHECK(m.snapshot(Op::kGetInline).count == 0);
  CHECK(m.snapshot(Op::kGetWritten).count == 0);
  later(Status());
  CHECK(m.snapshot(Op::kGetWritten).count == 1);
  Status seen(Code::kInternal, "x");
  m.timed(Op::kGetBatch, [&](Status s) { seen = s; })(Status());
  CHECK(seen.is_ok());
  CHECK(m.snapshot(Op::kGetBatch).count == 1);
}

TEST_CASE("metrics: in cluster mode every series carries the cluster label", "[metrics]") {
  ServerStats st;
  st.node_id = 2;
  st.cluster = "east";
  st.puts = 9;
  Metrics m;
  m.observe(Op::kDelete, microseconds(5));
  const auto s = samples(render_metrics(st, m));
  CHECK(s.at("kvrdma_puts_total{node_id=\"2\",cluster=\"east\"}") == "9");
  CHECK(s.at("kvrdma_request_duration_seconds_count{node_id=\"2\",cluster=\"east\","
             "op=\"delete\"}") == "1");
  CHECK(s.at("kvrdma_transport_write_duration_seconds_count{node_id=\"2\",cluster=\"east\"}") ==
        "0");
  for (const auto& [series, value] : s) {
    INFO(series);
    CHECK(series.find("node_id=\"2\",cluster=\"east\"") != std::string::npos);
  }
}

TEST_CASE("metrics: Server::metrics_text, metrics_address, and a metrics port in use",
          "[metrics]") {
  ServerOptions o;
  o.listen_addr = "127.0.0.1:0";
  o.memory_bytes = 8 << 20;
  o.log_level = LogLevel::kError;
  o.node_id = 4;
  SECTION("without an endpoint the text is still there") {
    auto server = Server::start(o);
    REQUIRE(server.is_ok());
    CHECK((*server)->metrics_address().empty());
    const auto s = samples((*server)->metrics_text());
    CHECK(s.at("kvrdma_pool_bytes{node_id=\"4\"}") == std::to_string(8 << 20));
    CHECK(s.at("kvrdma_gets_total{node_id=\"4\"}") == "0");
  }
  SECTION("a second server cannot take the first one's metrics port") {
    o.metrics_addr = "127.0.0.1:0";
    auto first = Server::start(o);
    REQUIRE(first.is_ok());
    const std::string addr = (*first)->metrics_address();
    REQUIRE(addr.rfind("127.0.0.1:", 0) == 0);
    CHECK(addr != "127.0.0.1:0");
    o.metrics_addr = addr;
    auto second = Server::start(o);
    REQUIRE_FALSE(second.is_ok());
    CHECK(second.status().code() == Code::kUnavailable);
    CHECK(second.status().message() ==
          "cannot serve metrics on " + addr +
              ": the port is in use or '127.0.0.1' is not an "
              "address of this host; pick another metrics_addr (--metrics-addr)");
    (*first)->shutdown();
    CHECK((*first)->metrics_text().find("kvrdma_request_duration_seconds_count") !=
          std::string::npos);
  }
}
