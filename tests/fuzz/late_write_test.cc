// A GET that fails while the server's write into its receive space may still be under way (the
// libfabric transport ends a write that is not complete at its deadline with DEADLINE_EXCEEDED
// while its posted pieces stay in flight) must not lend that space to the next GET: the late
// write would overwrite the next value in place. Here the server's transport completes one
// chosen write at once with DEADLINE_EXCEEDED and performs its copy only when the test says so,
// after a second GET has its value: deterministic, not a race the test hopes to lose. A real
// kvrdma::Client talks to the in-process server over a loopback port.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "kvrdma/client.h"
#include "service_harness.h"

using kvrdma::Code;
using kvrdma::Status;
using kvrdma::fuzz::InProcessService;
namespace transport = kvrdma::transport;

namespace {

// Forwards to the mock, except the write armed by hold_next(), which it completes at once with
// DEADLINE_EXCEEDED and performs later, in land().
class LateWriteTransport final : public kvrdma::fuzz::ForwardingTransport {
 public:
  using ForwardingTransport::ForwardingTransport;

  void hold_next() { armed_ = true; }
  bool holding() const {
    std::lock_guard lock(mu_);
    return held_.has_value();
  }
  // Performs the held write, now; its status.
  Status land() {
    std::optional<Held> h;
    {
      std::lock_guard lock(mu_);
      h.swap(held_);
    }
    if (!h) return Status(Code::kFailedPrecondition, "no write held");
    std::promise<Status> done;
    auto landed = done.get_future();
    inner().write(*h->src, h->src_offset, std::move(h->dst), h->dst_offset, h->len,
                  Clock::now() + std::chrono::seconds(10),
                  [&done](Status s) { done.set_value(std::move(s)); });
    return landed.get();
  }

  void write(const transport::LocalRegion& src, size_t src_offset,
             std::shared_ptr<transport::RemoteRegion> dst, size_t dst_offset, size_t len,
             Clock::time_point deadline, transport::Completion done) override {
    if (!armed_.exchange(false)) {
      ForwardingTransport::write(src, src_offset, std::move(dst), dst_offset, len, deadline,
                                 std::move(done));
      return;
    }
    {
      std::lock_guard lock(mu_);
      held_ = Held{&src, src_offset, std::move(dst), dst_offset, len};
    }
    done(Status(Code::kDeadlineExceeded, "RMA write not complete at the target by the deadline"));
  }

 private:
  struct Held {
    const transport::LocalRegion* src;  // the server's pool region: lives as long as the server
    size_t src_offset;
    std::shared_ptr<transport::RemoteRegion> dst;
    size_t dst_offset;
    size_t len;
  };
  std::atomic<bool> armed_{false};
  mutable std::mutex mu_;
  std::optional<Held> held_;  // guarded by mu_
};

// Where `bytes` first differs from a run of `fill`, npos when it does not (Catch prints this
// rather than a megabyte of value).
size_t first_wrong(std::string_view bytes, char fill) { return bytes.find_first_not_of(fill); }

// A server (listening on loopback) whose transport is a LateWriteTransport, holding "a" and "b",
// two 1 MiB values (above the inline threshold) of different bytes, and a client of it.
struct LateWriteServer {
  const std::string a = std::string(1 << 20, 'a');
  const std::string b = std::string(1 << 20, 'b');
  LateWriteTransport* late = nullptr;
  std::unique_ptr<InProcessService> service;
  std::unique_ptr<kvrdma::Client> client;

  // Server and client over `transport` (the mock by default).
  explicit LateWriteServer(uint64_t client_buffer_bytes,
                           const kvrdma::TransportOptions& transport = {}) {
    service = std::make_unique<InProcessService>(
        true,
        [this](std::unique_ptr<transport::Transport> t) {
          auto l = std::make_unique<LateWriteTransport>(std::move(t));
          late = l.get();
          return std::unique_ptr<transport::Transport>(std::move(l));
        },
        true, transport);
    kvrdma::ClientOptions o;
    o.server_addr = service->address();
    o.buffer_bytes = client_buffer_bytes;
    o.transport = transport;
    auto c = kvrdma::Client::connect(o);
    REQUIRE(c);
    client = std::move(*c);
    REQUIRE(client->put("a", a).is_ok());
    REQUIRE(client->put("b", b).is_ok());
  }

  // A GET of "a" whose write the server holds: it fails with DEADLINE_EXCEEDED.
  void fail_get_of_a() {
    late->hold_next();
    auto r = client->get("a");
    REQUIRE_FALSE(r);
    CHECK(r.status().code() == Code::kDeadlineExceeded);
    REQUIRE(late->holding());
  }
};

}  // namespace

TEST_CASE("late write: a GET that failed mid-write never lends its receive space to the next GET",
          "[fuzz][transfer]") {
  LateWriteServer s(64ull << 20);
  // One GET of the size first, so the next ones offer 1 MiB of space in their first request.
  {
    auto warm = s.client->get("b");
    REQUIRE(warm);
    REQUIRE(warm->in_receive_buffer());
  }
  s.fail_get_of_a();
  auto b = s.client->get("b");
  REQUIRE(b);
  REQUIRE(b->in_receive_buffer());
  REQUIRE(b->size() == s.b.size());
  REQUIRE(first_wrong(b->str(), 'b') == std::string_view::npos);
  // The held write of "a" lands now, in the space its failed GET had offered.
  REQUIRE(s.late->land().is_ok());
  CHECK(first_wrong(b->str(), 'b') == std::string_view::npos);
  // The client goes on: "a" itself reads whole.
  auto a = s.client->get("a");
  REQUIRE(a);
  CHECK(a->size() == s.a.size());
  CHECK(first_wrong(a->str(), 'a') == std::string_view::npos);
}

TEST_CASE("late write: a get_many item that failed mid-write never lends its space either",
          "[fuzz][transfer]") {
  LateWriteServer s(64ull << 20);
  const std::string_view a_key[] = {"a"}, b_key[] = {"b"};
  s.late->hold_next();
  auto failed = s.client->get_many(a_key);
  REQUIRE(failed.size() == 1);
  REQUIRE_FALSE(failed[0]);
  CHECK(failed[0].status().code() == Code::kDeadlineExceeded);
  REQUIRE(s.late->holding());
  auto got = s.client->get_many(b_key);
  REQUIRE(got.size() == 1);
  REQUIRE(got[0]);
  REQUIRE(got[0]->in_receive_buffer());
  REQUIRE(first_wrong(got[0]->str(), 'b') == std::string_view::npos);
  REQUIRE(s.late->land().is_ok());
  CHECK(first_wrong(got[0]->str(), 'b') == std::string_view::npos);
}

TEST_CASE("late write: a client whose GETs keep failing mid-write renews its receive buffer",
          "[fuzz][transfer]") {
  // 4 MiB of buffer: past a quarter retired (two 1 MiB extents) the session is re-opened.
  LateWriteServer s(4ull << 20);
  const uint64_t first_session = s.client->session_id();
  for (int i = 0; i < 6; ++i) {
    INFO("failed GET " << i + 1);
    s.fail_get_of_a();
    REQUIRE(s.late->land().is_ok());
  }
  CHECK(s.client->session_id() != first_session);
  // Six retired megabytes would not fit the 4 MiB buffer: GETs work because it was renewed.
  for (int i = 0; i < 4; ++i) {
    auto b = s.client->get("b");
    REQUIRE(b);
    CHECK(b->size() == s.b.size());
    CHECK(first_wrong(b->str(), 'b') == std::string_view::npos);
  }
}

// Over the mock the server writes through its own mapping of the client's buffer, which outlives
// the client's; over libfabric shm the write goes into the client's memory itself, so a buffer
// the renewal freed too early turns the late write into a write to unmapped memory (the
// provider fails it, or crashes copying). The replaced buffer must stay mapped and registered.
TEST_CASE("late write: a renewed buffer stays registered for the writes still coming into it",
          "[fuzz][transfer][fabric]") {
  kvrdma::TransportOptions shm;
  shm.mock = false;
  shm.provider = "shm";
  if (auto probe = transport::make_transport(shm); !probe) {
    WARN("skipping: libfabric shm cannot be opened here: " << probe.status().to_string());
    return;
  }
  LateWriteServer s(4ull << 20, shm);
  const uint64_t first_session = s.client->session_id();
  s.fail_get_of_a();
  REQUIRE(s.late->land().is_ok());  // a quarter retired: no renewal yet
  REQUIRE(s.client->session_id() == first_session);
  s.fail_get_of_a();  // past a quarter: the session is re-opened with a fresh buffer
  REQUIRE(s.client->session_id() != first_session);
  // The second late write arrives after the renewal, into the replaced buffer.
  CHECK(s.late->land().is_ok());
  auto b = s.client->get("b");
  REQUIRE(b);
  CHECK(first_wrong(b->str(), 'b') == std::string_view::npos);
}
