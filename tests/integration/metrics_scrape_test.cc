// kv-server --metrics-addr as a process: scraped over HTTP, parsed by Debian's
// python3-prometheus-client (tests/metrics_scrape.py), compared with the operations done.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <sstream>

#include "integration/harness.h"
#include "kvrdma/client.h"
#include "kvrdma/version.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using namespace kvrdma::testing;

namespace {

constexpr uint32_t kNode = 5;

struct Scrape {
  std::map<std::string, std::string> families;  // name -> type
  std::map<std::string, double> samples;        // "name{k=v,...}" (no node_id) -> value
};

// Scrapes `addr`/metrics through the Python parser; fails the test with its reason when the
// parser or one of its checks fails.
Scrape scrape(const std::string& addr) {
  RunResult r = run("/usr/bin/python3", {KVRDMA_METRICS_SCRAPE_PY, "http://" + addr + "/metrics",
                                         std::to_string(kNode)});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  Scrape s;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string kind, name, value;
    words >> kind >> name >> value;
    if (kind == "family") s.families[name] = value;
    if (kind == "sample") s.samples[name] = std::stod(value);
  }
  return s;
}

double count_of(const Scrape& s, const std::string& op) {
  const std::string key = "kvrdma_request_duration_seconds_count{op=" + op + "}";
  INFO(key);
  REQUIRE(s.samples.count(key) == 1);
  return s.samples.at(key);
}

// A loopback port with a listener on it, for as long as this lives.
struct BusyPort {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int port = 0;
  BusyPort() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(fd, 1) == 0);
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
  ~BusyPort() { close(fd); }
};

}  // namespace

TEST_CASE("metrics: a scrape parses and its counters match the operations done",
          "[metrics][mockonly]") {
  const std::string metrics_addr = "127.0.0.1:" + std::to_string(unused_loopback_port());
  ServerProcess server({"--memory-mb", "64", "--inline-threshold", "4096", "--node-id",
                        std::to_string(kNode), "--metrics-addr", metrics_addr});
  ClientOptions o;
  o.server_addr = server.address();
  o.timeout_ms = 20000;
  apply_test_transport(o.transport);
  auto client = Client::connect(o);
  INFO(client.status().to_string());
  REQUIRE(client.is_ok());
  Client& c = **client;

  const std::string small(64, 's'), big = pattern(10000, 1);
  for (const char* k : {"a", "b", "c"}) REQUIRE(c.put(k, small).is_ok());  // 3 inline PUTs
  REQUIRE(c.put("big", big).is_ok());                                      // 1 two-phase PUT
  REQUIRE(c.get_copy("a").value() == small);
  REQUIRE(c.get_copy("b").value() == small);
  REQUIRE(c.get_copy("missing").status().code() == kvrdma::Code::kNotFound);
  REQUIRE(c.get_copy("big").value() == big);  // transport-written
  REQUIRE(c.del("a").is_ok());
  const std::vector<std::string_view> keys = {"b", "c", "big", "gone"};
  auto got = c.get_many(keys);  // 1 GET batch
  REQUIRE(got.size() == 4);
  CHECK(got[0].value().str() == small);
  CHECK(got[2].value().str() == big);
  CHECK(got[3].status().code() == kvrdma::Code::kNotFound);
  const std::vector<kvrdma::KeyValue> items = {{"d", small}, {"e", small}};
  for (const auto& st : c.put_many(items)) REQUIRE(st.is_ok());  // 1 PUT batch

  const Scrape s = scrape(metrics_addr);
  auto stats = c.stats();  // a Stats call moves no counter
  REQUIRE(stats.is_ok());

  // Every stats figure is a family of the type its role says, with the value Stats reports.
  for (const kvrdma::StatInfo& f : kvrdma::stats_fields()) {
    INFO(f.name);
    if (f.role == kvrdma::StatRole::kIdentity) continue;
    const std::string name = std::string("kvrdma_") + f.name;
    const bool counter = f.role == kvrdma::StatRole::kCounter;
    REQUIRE(s.families.count(name) == 1);  // the parser drops a counter's _total
    CHECK(s.families.at(name) == (counter ? "counter" : "gauge"));
    const std::string sample = name + (counter ? "_total{}" : "{}");
    REQUIRE(s.samples.count(sample) == 1);
    if (counter || f.role == kvrdma::StatRole::kGauge) {
      if (std::string_view(f.name) != "sessions") CHECK(s.samples.at(sample) == f.number(*stats));
    }
  }
  // The operations above. A client that offered too little room for "big" is told its size and
  // asks again (a second GET, a hit, answered inline): hits and GETs are lower bounds.
  CHECK(s.samples.at("kvrdma_gets_total{}") >= 8);  // 4 single + 4 in the batch
  CHECK(s.samples.at("kvrdma_get_hits_total{}") >= 6);
  CHECK(s.samples.at("kvrdma_gets_total{}") ==
        s.samples.at("kvrdma_get_hits_total{}") + s.samples.at("kvrdma_get_misses_total{}"));
  CHECK(s.samples.at("kvrdma_get_misses_total{}") == 2);
  CHECK(s.samples.at("kvrdma_puts_total{}") == 6);
  CHECK(s.samples.at("kvrdma_deletes_total{}") == 1);
  CHECK(s.samples.at("kvrdma_keys{}") == 5);
  CHECK(s.samples.at("kvrdma_sessions{}") == 1);
  CHECK(s.samples.at("kvrdma_bytes_inline_received_total{}") == 5 * 64);
  CHECK(s.samples.at("kvrdma_bytes_put_committed_total{}") == 10000);

  CHECK(s.families.at("kvrdma_server_info") == "gauge");
  CHECK(s.samples.at("kvrdma_server_info{transport=mock,version=" + std::string(kvrdma::version()) +
                     "}") == 1);
  CHECK(s.families.at("kvrdma_request_duration_seconds") == "histogram");
  CHECK(s.families.at("kvrdma_transport_write_duration_seconds") == "histogram");
  CHECK(count_of(s, "put_inline") == 3);
  CHECK(count_of(s, "put_two_phase") == 1);
  CHECK(count_of(s, "delete") == 1);
  CHECK(count_of(s, "put_batch") == 1);
  CHECK(count_of(s, "get_inline") >= 3);
  CHECK(count_of(s, "get_written") >= 1);
  CHECK(count_of(s, "get_batch") >= 1);
  // Every transport write carried "big", and every one is timed.
  const double writes = s.samples.at("kvrdma_transport_write_duration_seconds_count{}");
  CHECK(writes >= 2);
  CHECK(s.samples.at("kvrdma_bytes_transport_written_total{}") == writes * 10000);
  CHECK(s.samples.at("kvrdma_transport_write_duration_seconds_bucket{le=+Inf}") == writes);
  CHECK(server.stop() == 0);
}

TEST_CASE("metrics: a bad --metrics-addr stops kv-server at start with the reason",
          "[metrics][mockonly]") {
  auto start = [](const std::string& addr) {
    return run(server_binary(),
               {"--listen-addr", "127.0.0.1:0", "--memory-mb", "16", "--metrics-addr", addr}, {},
               std::chrono::seconds(30));
  };
  SECTION("port in use") {
    BusyPort busy;
    const std::string addr = "127.0.0.1:" + std::to_string(busy.port);
    RunResult r = start(addr);
    INFO(r.err);
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("cannot serve metrics on " + addr + ": the port is in use") !=
          std::string::npos);
    CHECK(r.out.empty());  // never ready
  }
  SECTION("an address not of this host") {
    RunResult r = start("192.0.2.1:9100");  // TEST-NET-1: never local
    INFO(r.err);
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("'192.0.2.1' is not an address of this host") != std::string::npos);
    CHECK(r.err.find("--metrics-addr") != std::string::npos);
  }
  SECTION("not host:port") {
    for (const char* bad :
         {"nonsense", "127.0.0.1:", ":9100", "127.0.0.1:99999", "127.0.0.1:port"}) {
      RunResult r = start(bad);
      INFO(bad << ": " << r.err);
      CHECK(r.exit_code == 2);
      CHECK(r.err.find("setting 'metrics-addr': '" + std::string(bad) + "' is not valid") !=
            std::string::npos);
    }
  }
}
