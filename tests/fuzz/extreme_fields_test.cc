// Every request handler, fed each field at its extreme values (0, -1 and the minimum where
// signed, 2^64-1, huge strings, huge repeated fields) and malformed bytes, through the real
// service in-process: each call answers with a status code, none hangs or crashes, and a value
// stored before is intact afterwards. The libFuzzer targets (KVRDMA_FUZZ=ON) explore further.
#include <catch2/catch.hpp>

#include <google/protobuf/descriptor.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "kv_cache.pb.h"
#include "server/change_board.h"
#include "service_harness.h"

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using kvrdma::fuzz::InProcessService;

namespace {

// Ways to set one field to an extreme; each returns false when it does not apply to the type.
using Setter = std::function<bool(Message&, const FieldDescriptor*)>;

std::vector<std::pair<std::string, Setter>> extremes() {
  constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();
  std::vector<std::pair<std::string, Setter>> out;
  auto number = [&](std::string name, uint64_t u, int64_t i) {
    out.emplace_back(name, [u, i](Message& m, const FieldDescriptor* f) {
      const auto* r = m.GetReflection();
      if (f->is_repeated()) return false;
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(&m, f, u); return true;
        case FieldDescriptor::CPPTYPE_UINT32:
          r->SetUInt32(&m, f, static_cast<uint32_t>(u));
          return true;
        case FieldDescriptor::CPPTYPE_INT64: r->SetInt64(&m, f, i); return true;
        case FieldDescriptor::CPPTYPE_INT32:
          r->SetInt32(&m, f, static_cast<int32_t>(i));
          return true;
        case FieldDescriptor::CPPTYPE_BOOL: r->SetBool(&m, f, u != 0); return true;
        default: return false;
      }
    });
  };
  number("zero", 0, 0);
  number("one", 1, -1);
  number("2^63", uint64_t{1} << 63, std::numeric_limits<int64_t>::min());
  number("2^64-1", kMax64, std::numeric_limits<int64_t>::max());
  auto text = [&](std::string name, std::string value) {
    out.emplace_back(name, [value](Message& m, const FieldDescriptor* f) {
      if (f->cpp_type() != FieldDescriptor::CPPTYPE_STRING || f->is_repeated()) return false;
      m.GetReflection()->SetString(&m, f, value);
      return true;
    });
  };
  text("empty string", "");
  text("4 KiB + 1 of 0xff", std::string(4097, '\xff'));
  text("8 MiB string", std::string(8 << 20, 'x'));
  text("NULs", std::string(64, '\0'));
  out.emplace_back("100000 repeated", [](Message& m, const FieldDescriptor* f) {
    if (!f->is_repeated()) return false;
    const auto* r = m.GetReflection();
    for (int i = 0; i < 100000; ++i) {
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_UINT64: r->AddUInt64(&m, f, ~uint64_t{0}); break;
        case FieldDescriptor::CPPTYPE_UINT32: r->AddUInt32(&m, f, ~uint32_t{0}); break;
        case FieldDescriptor::CPPTYPE_INT64: r->AddInt64(&m, f, -1); break;
        case FieldDescriptor::CPPTYPE_INT32: r->AddInt32(&m, f, -1); break;
        case FieldDescriptor::CPPTYPE_BOOL: r->AddBool(&m, f, true); break;
        case FieldDescriptor::CPPTYPE_STRING: r->AddString(&m, f, "k"); break;
        case FieldDescriptor::CPPTYPE_MESSAGE: r->AddMessage(&m, f); break;
        default: return false;
      }
    }
    return true;
  });
  return out;
}

// Each call's limit: longer than the longest a Stats long poll may wait (wait_ms at its maximum
// is cut to ChangeBoard::kMaxWait), with room to spare on a loaded machine, so a call that runs
// into it hung. A limit equal to the cap would test the server's deadline rule instead, with a
// margin a stalled CI machine can eat; extreme fields' second test covers that rule.
constexpr std::chrono::milliseconds kCallLimit =
    kvrdma::server::ChangeBoard::kMaxWait + std::chrono::seconds(10);

// Sends a call, which must come back with a status: a hang shows as DEADLINE_EXCEEDED, a thrown
// exception in a handler as UNKNOWN.
grpc::Status call_and_check(InProcessService& service, const std::string& method,
                            const std::string& bytes) {
  const auto start = std::chrono::steady_clock::now();
  grpc::Status s = service.call(method, bytes, nullptr, kCallLimit);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  INFO("code " << s.error_code() << ": " << s.error_message() << ", after " << took.count()
               << " ms");
  CHECK(s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED);
  CHECK(s.error_code() != grpc::StatusCode::UNKNOWN);
  return s;
}

}  // namespace

TEST_CASE("extreme fields: every handler answers every field at every extreme", "[fuzz]") {
  InProcessService service;
  REQUIRE(service.methods().size() >= 10);
  // A stored value that no request below may damage.
  kvrdma::v1::PutRequest put;
  put.set_session_id(service.live_session());
  put.set_key("sentinel");
  put.set_value(std::string(1000, 's'));
  REQUIRE(service.call("Put", put.SerializeAsString(), nullptr).ok());

  const auto cases = extremes();
  for (const auto& method : service.methods()) {
    auto proto = service.new_request(method);
    REQUIRE(proto);
    const auto* d = proto->GetDescriptor();
    for (int fi = 0; fi < d->field_count(); ++fi) {
      const FieldDescriptor* f = d->field(fi);
      for (const auto& [name, set] : cases) {
        for (bool live : {false, true}) {
          std::unique_ptr<Message> m(proto->New());
          if (live) service.use_live_session(*m);
          if (!set(*m, f)) continue;
          INFO(method << "." << f->name() << " = " << name << (live ? " (live session)" : ""));
          grpc::Status s = call_and_check(service, method, m->SerializeAsString());
          if (!live && f->name() == "session_id") CHECK(!s.ok());
        }
      }
    }
    // Every field at once at the top of its range, and bytes that are no valid message.
    std::unique_ptr<Message> all(proto->New());
    for (int fi = 0; fi < d->field_count(); ++fi) (void)cases[3].second(*all, d->field(fi));
    for (const std::string& bytes :
         {all->SerializeAsString(), std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11),
          std::string("\x0a\xff\xff\xff\xff\x0f", 6), std::string(100, '\x08')}) {
      INFO(method << " with raw bytes of size " << bytes.size());
      call_and_check(service, method, bytes);
    }
  }

  kvrdma::v1::GetRequest get;
  get.set_session_id(service.live_session());
  get.set_key("sentinel");
  std::string bytes;
  REQUIRE(service.call("Get", get.SerializeAsString(), &bytes).ok());
  kvrdma::v1::GetReply reply;
  REQUIRE(reply.ParseFromString(bytes));
  CHECK(reply.is_inline());
  CHECK(reply.value() == std::string(1000, 's'));
  CHECK(service.core().store->stats().pinned == 0);
}

TEST_CASE("extreme fields: a long-poll Stats answers within a caller's shorter deadline",
          "[fuzz][stats]") {
  InProcessService service;
  kvrdma::v1::StatsRequest req;
  req.set_changed_since(std::numeric_limits<uint64_t>::max());  // never reached: waits it out
  req.set_wait_ms(10000);
  for (auto limit : {std::chrono::milliseconds(300), std::chrono::milliseconds(1500)}) {
    INFO("call deadline " << limit.count() << " ms");
    std::string bytes;
    grpc::Status s = service.call("Stats", req.SerializeAsString(), &bytes, limit);
    INFO("code " << s.error_code() << ": " << s.error_message());
    REQUIRE(s.ok());
    kvrdma::v1::StatsReply reply;
    REQUIRE(reply.ParseFromString(bytes));
    CHECK(reply.version() > 0);
  }
}

TEST_CASE("extreme fields: a long poll keeps the last tenth of the caller's time for its answer",
          "[fuzz][stats]") {
  using kvrdma::server::ChangeBoard;
  using ms = std::chrono::milliseconds;
  using ns = std::chrono::nanoseconds;
  const ms cap = ChangeBoard::kMaxWait;
  // No deadline: what was asked, up to the cap.
  CHECK(ChangeBoard::wait_within(ms(250), ns::max()) == ms(250));
  CHECK(ChangeBoard::wait_within(ms(std::numeric_limits<uint32_t>::max()), ns::max()) == cap);
  // A deadline far off changes nothing.
  CHECK(ChangeBoard::wait_within(ms(1000), std::chrono::seconds(60)) == ms(1000));
  // Shorter than the wait: nine tenths of it.
  CHECK(ChangeBoard::wait_within(ms(10000), ms(1500)) == ms(1350));
  // Just above the wait (gRPC rounds deadlines up to the millisecond, so a 10 s wait under a
  // 10 s deadline can see this): still nine tenths, not the whole wait.
  CHECK(ChangeBoard::wait_within(cap, cap + std::chrono::microseconds(400)) == ms(9000));
  CHECK(ChangeBoard::wait_within(ms(1000), ms(1050)) == ms(945));
  // Deadline passed or about to: answer at once.
  CHECK(ChangeBoard::wait_within(ms(1000), ns(0)) == ms(0));
  CHECK(ChangeBoard::wait_within(ms(1000), -std::chrono::seconds(3)) == ms(0));
  CHECK(ChangeBoard::wait_within(ms(1000), ns::min()) == ms(0));
}
