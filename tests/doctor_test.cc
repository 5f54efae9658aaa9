// kv-server doctor and kv-client doctor: on this machine they pass over the mock and libfabric
// tcp; a limit, a size, a busy port, a missing server or a wrong TLS key each gives the check's
// warn or fail line with its fix; --json parses.
#include <catch2/catch.hpp>

#include <regex>
#include <string>
#include <vector>

#include "doctor.h"
#include "integration/harness.h"

using namespace kvrdma;
using namespace kvrdma::testing;
using kvrdma::tools::Check;
using kvrdma::tools::Verdict;

namespace {

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Every line of a text report: "<verdict> <name>: <detail>[; fix: <fix>]", a fix exactly on the
// lines that are not ok, and the count line last. Returns the lines without the count.
std::vector<std::string> report_lines(const std::string& out) {
  static const std::regex kLine(R"(^(ok  |warn|fail) [a-z-]+: .+$)");
  static const std::regex kCount(R"(^\d+ ok, \d+ warn, \d+ fail$)");
  std::vector<std::string> lines;
  size_t pos = 0;
  for (size_t end; (end = out.find('\n', pos)) != std::string::npos; pos = end + 1) {
    lines.push_back(out.substr(pos, end - pos));
  }
  CHECK(pos == out.size());  // ends with a newline
  REQUIRE(lines.size() >= 2);
  CHECK(std::regex_match(lines.back(), kCount));
  lines.pop_back();
  for (const std::string& l : lines) {
    INFO(l);
    CHECK(std::regex_match(l, kLine));
    CHECK((l.rfind("ok", 0) == 0) == (l.find("; fix: ") == std::string::npos));
  }
  return lines;
}

// The line of check `name` ("" when absent).
std::string line_of(const std::vector<std::string>& lines, const std::string& name) {
  for (const std::string& l : lines) {
    if (l.find(" " + name + ": ") == 4) return l;
  }
  return "";
}

// Parses a --json report with Debian's Python and prints "ok" then "verdict name" per check.
RunResult parse_json_report(const std::string& json) {
  const char* script = R"(import json, sys
r = json.load(sys.stdin)
assert set(r) == {'program', 'ok', 'checks'}, r.keys()
print(r['program'], r['ok'])
for c in r['checks']:
    assert set(c) == {'name', 'verdict', 'detail', 'fix'}, c.keys()
    assert (c['verdict'] == 'ok') == (c['fix'] == ''), c
    print(c['verdict'], c['name'])
)";
  return run("/usr/bin/python3", {"-c", script}, json, std::chrono::seconds(30));
}

// The mock, then libfabric tcp.
const std::vector<std::vector<std::string>> kTransports = {{},
                                                           {"--mock", "false", "--provider",
                                                            "tcp"}};

const std::vector<std::string> kSmallServer = {"--listen-addr", "127.0.0.1:0", "--memory-mb", "64"};

}  // namespace

TEST_CASE("doctor: kv-server doctor passes on this machine over the mock and tcp", "[doctor]") {
  for (const std::vector<std::string>& transport : kTransports) {
    INFO((transport.empty() ? "mock" : "tcp"));
    RunResult r = run(server_binary(), with(with({"doctor"}, transport), kSmallServer));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    std::vector<std::string> lines = report_lines(r.out);
    CHECK(line_of(lines, "loopback-write").rfind("ok   loopback-write: 4.0 MiB written", 0) == 0);
    CHECK(line_of(lines, "listen-port").rfind("ok", 0) == 0);
    CHECK(!line_of(lines, "memlock").empty());
    CHECK(line_of(lines, "fabric-providers").find("tcp;ofi_rxm (RMA write, mr_mode ") !=
          std::string::npos);
    CHECK(line_of(lines, "dev-shm").empty() == !transport.empty());  // the mock's memory only
    if (!transport.empty()) {
      CHECK(line_of(lines, "transport").find("libfabric tcp;ofi_rxm") != std::string::npos);
    }

    RunResult j = run(server_binary(), with(with({"doctor", "--json"}, transport), kSmallServer));
    REQUIRE(j.exit_code == 0);
    RunResult parsed = parse_json_report(j.out);
    INFO(parsed.err);
    REQUIRE(parsed.exit_code == 0);
    CHECK(parsed.out.rfind("kv-server True\n", 0) == 0);
    CHECK(parsed.out.find("\nok loopback-write\n") != std::string::npos);
  }
}

TEST_CASE("doctor: kv-client doctor reaches a server and opens a session over the mock and tcp",
          "[doctor]") {
  for (const std::vector<std::string>& transport : kTransports) {
    INFO((transport.empty() ? "mock" : "tcp"));
    ServerProcess server(with(transport, {"--memory-mb", "64"}));
    RunResult r =
        run(client_binary(),
            with(with({"--server-addr", server.address(), "--buffer-mb", "8", "doctor"}, transport),
                 {}));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    std::vector<std::string> lines = report_lines(r.out);
    CHECK(line_of(lines, "server-reachable").rfind("ok", 0) == 0);
    CHECK(line_of(lines, "hello").rfind("ok   hello: session ", 0) == 0);
    CHECK(line_of(lines, "loopback-write").rfind("ok", 0) == 0);

    RunResult j =
        run(client_binary(),
            with(with({"--server-addr", server.address(), "--buffer-mb", "8", "doctor", "--json"},
                      transport),
                 {}));
    RunResult parsed = parse_json_report(j.out);
    INFO(j.out << parsed.err);
    REQUIRE(parsed.exit_code == 0);
    CHECK(parsed.out.rfind("kv-client True\n", 0) == 0);
    CHECK(parsed.out.find("\nok hello\n") != std::string::npos);
  }
}

TEST_CASE("doctor: what would break says fail (exit 3) or warn, each with its fix", "[doctor]") {
  SECTION("a pool larger than the host's memory fails") {
    RunResult r =
        run(server_binary(), {"doctor", "--listen-addr", "127.0.0.1:0", "--memory-mb", "1048576"});
    CHECK(r.exit_code == 3);
    const std::string line = line_of(report_lines(r.out), "memory");
    CHECK(line.rfind("fail memory: the pool of 1.0 TiB exceeds this host's memory", 0) == 0);
    CHECK(line.find("; fix: lower --memory-mb below ") != std::string::npos);
  }
  SECTION("a locked-memory limit below the pool warns with the mock (it pins nothing)") {
    RunResult r = run("/bin/sh", {"-c", "ulimit -l 64 && exec \"$0\" \"$@\"", server_binary(),
                                  "doctor", "--listen-addr", "127.0.0.1:0", "--memory-mb", "64"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);  // a warning is not a failure
    const std::string line = line_of(report_lines(r.out), "memlock");
    CHECK(line.rfind("warn memlock: locked-memory limit 64.0 KiB is below the pool of 64.0 MiB",
                     0) == 0);
    CHECK(line.find("LimitMEMLOCK=infinity") != std::string::npos);
  }
  SECTION("a busy gRPC port fails, naming it") {
    ServerProcess running({"--memory-mb", "16"});
    RunResult r =
        run(server_binary(), {"doctor", "--listen-addr", running.address(), "--memory-mb", "16"});
    CHECK(r.exit_code == 3);
    const std::string port = running.address().substr(running.address().rfind(':') + 1);
    const std::string line = line_of(report_lines(r.out), "listen-port");
    CHECK(line == "fail listen-port: " + running.address() + ": port " + port +
                      " is in use; fix: stop what listens there (ss -ltnp 'sport = :" + port +
                      "' names it) or pick another port in --listen-addr");
  }
  SECTION("kv-client doctor without a server fails reachability and does not try Hello") {
    const std::string addr = "127.0.0.1:" + std::to_string(unused_loopback_port());
    RunResult r = run(client_binary(), {"--server-addr", addr, "--buffer-mb", "8", "doctor"});
    CHECK(r.exit_code == 3);
    std::vector<std::string> lines = report_lines(r.out);
    CHECK(line_of(lines, "server-reachable").rfind("fail server-reachable: " + addr + ": ", 0) ==
          0);
    CHECK(line_of(lines, "hello") ==
          "fail hello: not tried: no server address answered; fix: fix the server-reachable "
          "lines first");
  }
  SECTION("cluster mode: an etcd endpoint that does not answer fails") {
    const std::string etcd = "http://127.0.0.1:" + std::to_string(unused_loopback_port());
    RunResult r = run(server_binary(), {"doctor", "--listen-addr", "127.0.0.1:0", "--memory-mb",
                                        "16", "--cluster", "c1", "--etcd-endpoints", etcd});
    CHECK(r.exit_code == 3);
    const std::string line = line_of(report_lines(r.out), "etcd");
    CHECK(line.rfind("fail etcd: " + etcd + ": Connection refused; fix: start etcd there", 0) == 0);
  }
  SECTION("a provider that is not here fails the transport line") {
    RunResult r = run(server_binary(), {"doctor", "--listen-addr", "127.0.0.1:0", "--memory-mb",
                                        "16", "--mock", "false", "--provider", "efa"});
    CHECK(r.exit_code == 3);
    const std::string line = line_of(report_lines(r.out), "transport");
    CHECK(line.rfind("fail transport: --mock false --provider efa: ", 0) == 0);
    CHECK(line.find("; fix: pick a provider fabric-providers lists") != std::string::npos);
  }
}

TEST_CASE("doctor: the checks decide by the values they are given", "[doctor]") {
  using tools::check_memlock;
  const uint64_t gib = 1ull << 30;
  CHECK(check_memlock(gib, "pool", "memory-mb", RLIM_INFINITY, true).verdict == Verdict::kOk);
  CHECK(check_memlock(gib, "pool", "memory-mb", 2 * gib, true).verdict == Verdict::kOk);
  Check pinned = check_memlock(gib, "pool", "memory-mb", 8 << 20, true);
  CHECK(pinned.verdict == Verdict::kFail);
  CHECK(pinned.detail ==
        "locked-memory limit 8.0 MiB is below the pool of 1.0 GiB: verbs and "
        "efa pin every registered page, so registration fails");
  CHECK(pinned.fix.find("; or lower --memory-mb") != std::string::npos);
  CHECK(check_memlock(gib, "pool", "memory-mb", 8 << 20, false).verdict == Verdict::kWarn);

  CHECK(tools::check_memory(gib, "pool", "memory-mb", 4 * gib, 2 * gib).verdict == Verdict::kOk);
  CHECK(tools::check_memory(gib, "pool", "memory-mb", 4 * gib, gib / 2).verdict == Verdict::kWarn);
  CHECK(tools::check_memory(gib, "pool", "memory-mb", gib / 2, gib / 4).verdict == Verdict::kFail);

  Check shm = tools::check_shm_space(gib, "receive buffer", "buffer-mb", 64 << 20);
  CHECK(shm.verdict == Verdict::kFail);
  CHECK(shm.fix.find("or lower --buffer-mb") != std::string::npos);
  CHECK(tools::check_shm_space(gib, "pool", "memory-mb", 2 * gib).verdict == Verdict::kOk);

  CHECK(tools::check_listen("127.0.0.1:0").verdict == Verdict::kOk);
  Check foreign = tools::check_listen("192.0.2.1:50051");  // TEST-NET-1: never this host's
  CHECK(foreign.verdict == Verdict::kFail);
  CHECK(foreign.detail == "192.0.2.1:50051: 192.0.2.1 is not an address of this host");
}

TEST_CASE("doctor: TLS files must be readable, PEM, and the key the certificate's", "[doctor]") {
  char tmpl[] = "/tmp/kvrdma-doctor-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  auto make = [&](const std::string& name) {
    RunResult r = run("/usr/bin/openssl",
                      {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                       "-nodes", "-days", "400", "-subj", "/CN=" + name, "-keyout",
                       dir + "/" + name + ".key", "-out", dir + "/" + name + ".pem"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  };
  make("a");
  make("b");
  SecurityOptions s;
  s.tls_cert = dir + "/a.pem";
  s.tls_key = dir + "/a.key";
  std::vector<Check> good = tools::check_tls(s, true);
  REQUIRE(good.size() == 2);
  INFO(good[0].detail);
  CHECK(good[0].verdict == Verdict::kOk);
  // 400 days from the second openssl ran: 399 once that second has passed.
  CHECK(std::regex_match(good[0].detail,
                         std::regex(".*/a\\.pem: a PEM certificate valid for (399|400) "
                                    "more days")));
  CHECK(good[1].verdict == Verdict::kOk);
  CHECK(good[1].detail == dir + "/a.key: a PEM private key, matching --tls-cert");

  s.tls_key = dir + "/b.key";
  std::vector<Check> mismatch = tools::check_tls(s, true);
  REQUIRE(mismatch.size() == 2);
  CHECK(mismatch[1].verdict == Verdict::kFail);
  CHECK(mismatch[1].detail == dir + "/b.key is not the key of " + dir + "/a.pem");

  s.tls_key = dir + "/missing.key";
  std::vector<Check> missing = tools::check_tls(s, true);
  REQUIRE(missing.size() == 2);
  CHECK(missing[1].verdict == Verdict::kFail);
  CHECK(missing[1].detail == "cannot read " + dir + "/missing.key: No such file or directory");

  s.tls_key = dir + "/a.pem";  // a certificate where the key belongs
  CHECK(tools::check_tls(s, true)[1].verdict == Verdict::kFail);

  SecurityOptions none;
  std::vector<Check> off = tools::check_tls(none, true);
  REQUIRE(off.size() == 1);
  CHECK(off[0].verdict == Verdict::kOk);

  RunResult rm = run("/bin/rm", {"-rf", dir});
  CHECK(rm.exit_code == 0);
}
