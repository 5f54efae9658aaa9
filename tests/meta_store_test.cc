// The MetaStore contract, one suite run against MemoryMetaStore and against a real etcd
// (EtcdProcess, one per test case; skipped with a warning when etcd is not installed). Then the
// failure cases of each: etcd unreachable or paused, and the in-memory test hooks.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "cluster/meta_store.h"
#include "etcd.grpc.pb.h"
#include "etcd_process.h"

namespace kvrdma::cluster {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

struct MemoryBackend {
  MemoryBackend() : mem(MemoryMetaStore::create()) {}
  bool ready() const { return true; }
  MetaStore& store() { return *mem; }
  std::shared_ptr<MemoryMetaStore> mem;
};

struct EtcdBackend {
  EtcdBackend() {
    if (!testing::etcd_available()) return;
    auto p = testing::EtcdProcess::start();
    REQUIRE(p.is_ok());
    etcd = std::move(*p);
    auto s = connect_etcd({etcd->endpoint()}, 2000ms);
    REQUIRE(s.is_ok());
    client = std::move(*s);
  }
  bool ready() const { return client != nullptr; }
  MetaStore& store() { return *client; }
  std::unique_ptr<testing::EtcdProcess> etcd;
  std::unique_ptr<MetaStore> client;
};

#define SKIP_WITHOUT(backend)                                         \
  if (!(backend).ready()) {                                           \
    WARN("etcd is not installed (/usr/bin/etcd): etcd case skipped"); \
    return;                                                           \
  }

// The entries under prefix as key=value lines, for byte-exact comparisons.
std::string dump(MetaStore& s, std::string_view prefix) {
  auto r = s.range(prefix);
  REQUIRE(r.is_ok());
  std::string out;
  for (const auto& e : r->entries) out += e.key + "=" + e.value + "\n";
  return out;
}

int64_t revision(MetaStore& s) {
  auto r = s.range("/");
  REQUIRE(r.is_ok());
  return r->revision;
}

TEMPLATE_TEST_CASE("meta store: leases grant, keep alive, revoke", "[meta_store]", MemoryBackend,
                   EtcdBackend) {
  TestType b;
  SKIP_WITHOUT(b);
  MetaStore& s = b.store();
  auto lease = s.grant_lease(5000ms);
  REQUIRE(lease.is_ok());
  CHECK(*lease != 0);
  REQUIRE(s.keep_alive(*lease).is_ok());
  REQUIRE(s.keep_alive(*lease).is_ok());  // the stream is reused
  REQUIRE(s.put("/l/a", "held", *lease).is_ok());
  REQUIRE(s.put("/l/b", "free", 0).is_ok());
  CHECK(dump(s, "/l/") == "/l/a=held\n/l/b=free\n");
  auto r = s.range("/l/a");
  REQUIRE(r.is_ok());
  REQUIRE(r->entries.size() == 1);
  CHECK(r->entries[0].lease == *lease);

  REQUIRE(s.revoke(*lease).is_ok());
  CHECK(dump(s, "/l/") == "/l/b=free\n");
  Status gone = s.keep_alive(*lease);
  CHECK(gone.code() == Code::kNotFound);
  CHECK(s.revoke(*lease).is_ok());  // idempotent
  CHECK(s.put("/l/c", "late", *lease).code() == Code::kNotFound);
  auto late = s.create("/l/c", "late", *lease);
  CHECK(late.status().code() == Code::kNotFound);
  CHECK(dump(s, "/l/") == "/l/b=free\n");
  CHECK(s.requests() > 0);
}

TEMPLATE_TEST_CASE("meta store: a lease left alone expires", "[meta_store]", MemoryBackend,
                   EtcdBackend) {
  TestType b;
  SKIP_WITHOUT(b);
  MetaStore& s = b.store();
  auto lease = s.grant_lease(1000ms);
  REQUIRE(lease.is_ok());
  auto created = s.create("/x/node", "n1", *lease);
  REQUIRE(created.is_ok());
  REQUIRE(*created);
  const auto start = Steady::now();
  int64_t rev = revision(s);
  // Wait for the delete event rather than sleeping; bounded in rounds and time.
  for (int i = 0; i < 20 && !dump(s, "/x/").empty() && Steady::now() - start < 15s; ++i) {
    auto w = s.wait_for_change("/x/", rev, 5000ms);
    REQUIRE(w.is_ok());
    rev = *w;
  }
  CHECK(dump(s, "/x/").empty());
  CHECK(Steady::now() - start >= 900ms);
  CHECK(s.keep_alive(*lease).code() == Code::kNotFound);
}

TEMPLATE_TEST_CASE("meta store: create if absent", "[meta_store]", MemoryBackend, EtcdBackend) {
  TestType b;
  SKIP_WITHOUT(b);
  MetaStore& s = b.store();
  auto first = s.create("/c/controller", "7", 0);
  REQUIRE(first.is_ok());
  CHECK(*first);
  MetaEntry existing;
  auto second = s.create("/c/controller", "8", 0, &existing);
  REQUIRE(second.is_ok());
  CHECK_FALSE(*second);
  CHECK(existing.key == "/c/controller");
  CHECK(existing.value == "7");
  CHECK(existing.create_revision > 0);
  CHECK(existing.mod_revision == existing.create_revision);
  CHECK(dump(s, "/c/") == "/c/controller=7\n");
  // Gone again, it can be created again.
  REQUIRE(s.erase("/c/controller").is_ok());
  auto third = s.create("/c/controller", "9", 0);
  REQUIRE(third.is_ok());
  CHECK(*third);
  CHECK(dump(s, "/c/") == "/c/controller=9\n");
  // Binary values survive byte for byte.
  std::string bin("\0\x01\xff\x7f", 4);
  REQUIRE(s.put("/c/bin", bin, 0).is_ok());
  auto r = s.range("/c/bin");
  REQUIRE(r.is_ok());
  REQUIRE(r->entries.size() == 1);
  CHECK(r->entries[0].value == bin);
}

TEMPLATE_TEST_CASE("meta store: compare and swap", "[meta_store]", MemoryBackend, EtcdBackend) {
  TestType b;
  SKIP_WITHOUT(b);
  MetaStore& s = b.store();
  auto absent = s.compare_and_swap("/m/map", 0, "epoch1", 0);
  REQUIRE(absent.is_ok());
  CHECK(*absent);
  auto again = s.compare_and_swap("/m/map", 0, "epoch1b", 0);  // no longer absent
  REQUIRE(again.is_ok());
  CHECK_FALSE(*again);
  auto r = s.range("/m/map");
  REQUIRE(r.is_ok());
  REQUIRE(r->entries.size() == 1);
  int64_t mod = r->entries[0].mod_revision;
  auto next = s.compare_and_swap("/m/map", mod, "epoch2", 0);
  REQUIRE(next.is_ok());
  CHECK(*next);
  auto stale = s.compare_and_swap("/m/map", mod, "epoch3", 0);
  REQUIRE(stale.is_ok());
  CHECK_FALSE(*stale);
  CHECK(dump(s, "/m/") == "/m/map=epoch2\n");
}

TEMPLATE_TEST_CASE("meta store: range of a prefix", "[meta_store]", MemoryBackend, EtcdBackend) {
  TestType b;
  SKIP_WITHOUT(b);
  MetaStore& s = b.store();
  for (const char* k : {"/r/nodes/c", "/r/nodes/a", "/r/nodes0", "/r/node", "/r/nodes/b", "/q/a"}) {
    REQUIRE(s.put(k, std::string("v") + k, 0).is_ok());
  }
  CHECK(dump(s, "/r/nodes/") ==
        "/r/nodes/a=v/r/nodes/a\n/r/nodes/b=v/r/nodes/b\n/r/nodes/c=v/r/nodes/c\n");
  auto r = s.range("/r/nodes/");
  REQUIRE(r.is_ok());
  CHECK(r->revision >= r->entries.back().mod_revision);
  CHECK(dump(s, "/none/").empty());
}

TEMPLATE_TEST_CASE("meta store: wait for change", "[meta_store]", MemoryBackend, EtcdBackend) {
  TestType b;
  SKIP_WITHOUT(b);
  MetaStore& s = b.store();
  int64_t rev = revision(s);

  SECTION("a change by another thread wakes it with that revision") {
    auto waiter =
        std::async(std::launch::async, [&] { return s.wait_for_change("/w/", rev, 10000ms); });
    REQUIRE(s.put("/w/k", "v", 0).is_ok());
    REQUIRE(waiter.wait_for(10s) == std::future_status::ready);
    auto got = waiter.get();
    REQUIRE(got.is_ok());
    auto r = s.range("/w/k");
    REQUIRE(r.is_ok());
    REQUIRE(r->entries.size() == 1);
    CHECK(*got == r->entries[0].mod_revision);
    // A delete is a change too.
    REQUIRE(s.erase("/w/k").is_ok());
    auto del = s.wait_for_change("/w/", *got, 5000ms);
    REQUIRE(del.is_ok());
    CHECK(*del > *got);
  }
  SECTION("nothing under the prefix: after_revision at the timeout") {
    REQUIRE(s.put("/other/k", "v", 0).is_ok());
    const auto start = Steady::now();
    auto got = s.wait_for_change("/w/", rev + 1, 300ms);
    REQUIRE(got.is_ok());
    CHECK(*got == rev + 1);
    CHECK(Steady::now() - start >= 250ms);
    CHECK(Steady::now() - start < 5s);
  }
  SECTION("cancel_waits wakes a waiter, and later waits return at once") {
    auto waiter =
        std::async(std::launch::async, [&] { return s.wait_for_change("/w/", rev, 30000ms); });
    // The waiter may not have started yet; cancel_waits covers future waits too.
    s.cancel_waits();
    REQUIRE(waiter.wait_for(10s) == std::future_status::ready);
    auto got = waiter.get();
    REQUIRE(got.is_ok());
    CHECK(*got == rev);
    const auto start = Steady::now();
    auto later = s.wait_for_change("/w/", rev, 30000ms);
    REQUIRE(later.is_ok());
    CHECK(*later == rev);
    CHECK(Steady::now() - start < 5s);
  }
}

// A loopback port nobody listens on (bound, then closed).
int unused_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  close(fd);
  return ntohs(a.sin_port);
}

TEST_CASE("etcd: unreachable endpoints fail within the timeout", "[meta_store][etcd]") {
  std::string endpoint = "http://127.0.0.1:" + std::to_string(unused_port());
  const auto start = Steady::now();
  auto s = connect_etcd({endpoint}, 1000ms);
  REQUIRE_FALSE(s.is_ok());
  CHECK(s.status().code() == Code::kUnavailable);
  CHECK_THAT(s.status().message(), Catch::Contains(endpoint));
  CHECK_THAT(s.status().message(), Catch::Contains("--etcd-endpoints"));
  CHECK(Steady::now() - start < 3s);

  auto none = connect_etcd({}, 1000ms);
  CHECK(none.status().code() == Code::kInvalidArgument);
}

TEST_CASE("etcd: a dead endpoint is skipped for the next", "[meta_store][etcd]") {
  if (!testing::etcd_available()) {
    WARN("etcd is not installed (/usr/bin/etcd): skipped");
    return;
  }
  auto etcd = testing::EtcdProcess::start();
  REQUIRE(etcd.is_ok());
  std::string dead = "127.0.0.1:" + std::to_string(unused_port());
  auto s = connect_etcd({dead, (*etcd)->endpoint()}, 2000ms);
  REQUIRE(s.is_ok());
  CHECK((*s)->describe() == "etcd " + (*etcd)->endpoint());
  REQUIRE((*s)->put("/e/k", "v", 0).is_ok());
  CHECK(dump(**s, "/e/") == "/e/k=v\n");
}

TEST_CASE("etcd: a paused etcd makes calls fail within their deadline", "[meta_store][etcd]") {
  if (!testing::etcd_available()) {
    WARN("etcd is not installed (/usr/bin/etcd): skipped");
    return;
  }
  auto etcd = testing::EtcdProcess::start();
  REQUIRE(etcd.is_ok());
  auto connected = connect_etcd({(*etcd)->endpoint()}, 1000ms);
  REQUIRE(connected.is_ok());
  MetaStore& s = **connected;
  auto lease = s.grant_lease(10000ms);
  REQUIRE(lease.is_ok());
  REQUIRE(s.keep_alive(*lease).is_ok());
  int64_t rev = revision(s);

  (*etcd)->pause();
  auto timed = [](auto&& call) {
    const auto start = Steady::now();
    Status st = call();
    CHECK(Steady::now() - start < 3s);
    return st;
  };
  Status put = timed([&] { return s.put("/p/k", "v", 0); });
  CHECK(put.code() == Code::kUnavailable);
  CHECK_THAT(put.message(), Catch::Contains((*etcd)->endpoint()));
  CHECK(timed([&] { return s.keep_alive(*lease); }).code() == Code::kUnavailable);
  CHECK(timed([&] { return s.range("/p/").status(); }).code() == Code::kUnavailable);
  CHECK(timed([&] { return s.wait_for_change("/p/", rev, 500ms).status(); }).code() ==
        Code::kUnavailable);

  (*etcd)->resume();
  // Back: calls succeed again (the keepalive stream is re-opened).
  Status again;
  for (int i = 0; i < 20; ++i) {
    again = s.put("/p/k", "v", 0);
    if (again.is_ok()) break;
  }
  REQUIRE(again.is_ok());
  CHECK(s.keep_alive(*lease).is_ok());
  CHECK(dump(s, "/p/") == "/p/k=v\n");
}

TEST_CASE("etcd: a wait from a compacted revision returns the current one", "[meta_store][etcd]") {
  if (!testing::etcd_available()) {
    WARN("etcd is not installed (/usr/bin/etcd): skipped");
    return;
  }
  auto etcd = testing::EtcdProcess::start();
  REQUIRE(etcd.is_ok());
  auto connected = connect_etcd({(*etcd)->endpoint()}, 2000ms);
  REQUIRE(connected.is_ok());
  MetaStore& s = **connected;
  int64_t old = revision(s);
  for (int i = 0; i < 5; ++i) REQUIRE(s.put("/other/k", std::to_string(i), 0).is_ok());
  int64_t now = revision(s);
  REQUIRE(now == old + 5);
  // Compact past `old` with etcd's own RPC: the history a watch from old + 1 needs is gone.
  std::string target = (*etcd)->endpoint().substr(std::string("http://").size());
  auto kv =
      etcdserverpb::KV::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  etcdserverpb::CompactionRequest req;
  req.set_revision(now);
  req.set_physical(true);
  etcdserverpb::CompactionResponse resp;
  REQUIRE(kv->Compact(&ctx, req, &resp).ok());

  const auto start = Steady::now();
  auto got = s.wait_for_change("/w/", old, 10000ms);  // nothing changed under /w/ at all
  REQUIRE(got.is_ok());
  CHECK(*got == now);
  CHECK(Steady::now() - start < 5s);
}

TEST_CASE("memory meta store: test hooks", "[meta_store]") {
  auto s = MemoryMetaStore::create();
  CHECK(s->describe() == "in-memory");

  SECTION("expire_lease ends a lease as etcd would") {
    auto lease = s->grant_lease(60000ms);
    REQUIRE(lease.is_ok());
    REQUIRE(s->put("/h/a", "1", *lease).is_ok());
    int64_t rev = revision(*s);
    s->expire_lease(*lease);
    CHECK(dump(*s, "/h/").empty());
    CHECK(s->keep_alive(*lease).code() == Code::kNotFound);
    auto w = s->wait_for_change("/h/", rev, 0ms);
    REQUIRE(w.is_ok());
    CHECK(*w == rev + 1);
    // A put on a lease that is gone is refused.
    CHECK(s->put("/h/b", "2", *lease).code() == Code::kNotFound);
  }
  SECTION("set_unreachable fails every call until cleared") {
    REQUIRE(s->put("/h/a", "1", 0).is_ok());
    int64_t rev = revision(*s);
    s->set_unreachable(true);
    CHECK(s->put("/h/a", "2", 0).code() == Code::kUnavailable);
    CHECK(s->range("/h/").status().code() == Code::kUnavailable);
    CHECK(s->grant_lease(1000ms).status().code() == Code::kUnavailable);
    const auto start = Steady::now();
    auto w = s->wait_for_change("/h/", rev, 200ms);
    CHECK(w.status().code() == Code::kUnavailable);
    CHECK(Steady::now() - start >= 150ms);
    s->set_unreachable(false);
    CHECK(dump(*s, "/h/") == "/h/a=1\n");
  }
}

}  // namespace
}  // namespace kvrdma::cluster
