// The GetStream fast path of single GETs (lib/client/get_stream.h): per-request errors keep the
// stream open, a server gone or silent fails the GET in bounded time, a server without the
// method sends the caller to unary Get, and a shared Client mixes both paths correctly. The
// ordinary client suites cover it over mock, tcp and shm too (Client uses it by default).
#include <catch2/catch.hpp>

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "client/get_stream.h"
#include "integration/harness.h"
#include "integration/test_client.h"
#include "kv_cache.grpc.pb.h"
#include "kvrdma/client.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using kvrdma::client::GetStreams;
using namespace kvrdma::testing;
using Outcome = GetStreams::Outcome;
using Steady = std::chrono::steady_clock;

namespace {

std::unique_ptr<Client> connect(const std::string& address, uint64_t streams = 16) {
  ClientOptions o = test_client_options(address);
  o.get_streams = streams;
  return connect_client(o);
}

std::unique_ptr<kvrdma::v1::KvCache::Stub> stub_for(const std::string& address) {
  return kvrdma::v1::KvCache::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

kvrdma::v1::GetRequest get_request(uint64_t session, const std::string& key, uint64_t offset = 0,
                                   uint64_t capacity = 0) {
  kvrdma::v1::GetRequest r;
  r.set_session_id(session);
  r.set_key(key);
  r.set_dest_offset(offset);
  r.set_dest_capacity(capacity);
  return r;
}

// An in-process stand-in for a kv-server whose GetStream reads requests and never answers
// (kSilent), answers each with the wrong request id (kWrongId), or does not exist (kMissing).
class FakeServer {
 public:
  enum Mode { kSilent, kWrongId, kMissing };

  explicit FakeServer(Mode mode) : service_(mode) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    if (mode == kMissing) {
      b.RegisterService(&plain_);
    } else {
      b.RegisterService(&service_);
    }
    server_ = b.BuildAndStart();
    REQUIRE(server_ != nullptr);
    REQUIRE(port_ != 0);
  }
  ~FakeServer() { shutdown(); }
  void shutdown() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  using Request = kvrdma::v1::StreamGetRequest;
  using Reply = kvrdma::v1::StreamGetReply;
  class Reactor final : public grpc::ServerBidiReactor<Request, Reply> {
   public:
    explicit Reactor(Mode mode) : mode_(mode) { StartRead(&request_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      if (mode_ == kSilent) {
        StartRead(&request_);
        return;
      }
      reply_.set_request_id(request_.request_id() + 1000);
      StartWrite(&reply_);
    }
    void OnWriteDone(bool) override { StartRead(&request_); }
    void OnDone() override { delete this; }

   private:
    Mode mode_;
    Request request_;
    Reply reply_;
  };
  class Service final : public kvrdma::v1::KvCache::CallbackService {
   public:
    explicit Service(Mode mode) : mode_(mode) {}
    grpc::ServerBidiReactor<Request, Reply>* GetStream(grpc::CallbackServerContext*) override {
      return new Reactor(mode_);
    }

   private:
    Mode mode_;
  };

  Service service_;
  kvrdma::v1::KvCache::CallbackService plain_;  // every method UNIMPLEMENTED
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

// A server holding "small" (inline) and "big" (1 MiB), a client's session on it, and a
// GetStreams of up to 4 streams of its own.
struct TwoValues {
  ServerProcess server{{"--memory-mb", "64"}};
  std::unique_ptr<Client> c = connect(server.address());
  const std::string big = pattern(1 << 20, 7);
  std::unique_ptr<kvrdma::v1::KvCache::Stub> stub = stub_for(server.address());
  GetStreams streams{stub.get(), "", 4};
  const Steady::time_point deadline = Steady::now() + std::chrono::seconds(20);
  uint64_t session = 0;
  TwoValues() {
    REQUIRE(c->put("small", "value").is_ok());
    REQUIRE(c->put("big", big).is_ok());
    session = c->session_id();
  }
};

}  // namespace

TEST_CASE("get stream: a request's error is its own; the stream stays open", "[stream]") {
  TwoValues f;
  auto& [server, c, big, stub, streams, deadline, session] = f;
  kvrdma::v1::GetReply reply;

  auto r = streams.get(get_request(session, "small"), &reply, deadline);
  REQUIRE(r.outcome == Outcome::kDone);
  CHECK(r.status.is_ok());
  CHECK(reply.is_inline());
  CHECK(reply.value() == "value");

  r = streams.get(get_request(session, "absent"), &reply, deadline);
  CHECK(r.outcome == Outcome::kDone);
  CHECK(r.status.code() == Code::kNotFound);

  r = streams.get(get_request(session ^ 0x5a5a, "small"), &reply, deadline);
  CHECK(r.outcome == Outcome::kDone);
  CHECK(r.status.code() == Code::kFailedPrecondition);
  CHECK(r.status.message().find("session") != std::string::npos);

  r = streams.get(get_request(session, ""), &reply, deadline);
  CHECK(r.outcome == Outcome::kDone);
  CHECK(r.status.code() == Code::kInvalidArgument);

  // Too little space: the reply says how much, nothing is written.
  r = streams.get(get_request(session, "big"), &reply, deadline);
  CHECK(r.outcome == Outcome::kDone);
  CHECK(r.status.is_ok());
  CHECK_FALSE(reply.written());
  CHECK(reply.value_len() == big.size());

  // Space outside the registered region: refused, nothing written.
  r = streams.get(get_request(session, "big", uint64_t{1} << 62, 2 << 20), &reply, deadline);
  CHECK(r.outcome == Outcome::kDone);
  CHECK(r.status.code() == Code::kInvalidArgument);

  r = streams.get(get_request(session, "small"), &reply, deadline);
  CHECK(r.outcome == Outcome::kDone);
  CHECK(reply.value() == "value");
  CHECK(streams.streams_opened() == 1);  // every error above came on the same stream
  CHECK(c->get_copy("big").value() == big);
}

TEST_CASE("get stream: the server gone fails GETs at once, and a restarted one is found again",
          "[stream][mockonly]") {
  auto server = std::make_unique<ServerProcess>(std::vector<std::string>{"--memory-mb", "16"});
  const std::string address = server->address();
  auto c = connect(address);
  REQUIRE(c->put("k", "v").is_ok());
  REQUIRE(c->get_copy("k").value() == "v");
  auto stub = stub_for(address);
  GetStreams streams(stub.get(), "", 2);
  kvrdma::v1::GetReply reply;
  const uint64_t session = c->session_id();
  REQUIRE(streams.get(get_request(session, "k"), &reply, Steady::now() + std::chrono::seconds(20))
              .outcome == Outcome::kDone);

  REQUIRE(server->stop() == 0);
  auto t0 = Steady::now();
  auto r = streams.get(get_request(session, "k"), &reply, t0 + std::chrono::seconds(20));
  CHECK(r.outcome == Outcome::kFailed);
  CHECK(r.status.code() == Code::kUnavailable);
  auto g = c->get("k");
  CHECK(g.status().code() == Code::kUnavailable);
  CHECK(Steady::now() - t0 < std::chrono::seconds(10));  // failed, not waited out

  // A new server on the same port: the client re-opens its session and streams.
  server.reset();
  const std::string port = address.substr(address.rfind(':') + 1);
  ServerProcess again({"--memory-mb", "16", "--listen-addr", "127.0.0.1:" + port});
  // The channel reconnects on gRPC's backoff (100 ms to 1 s here); calls before then fail fast
  // with UNAVAILABLE, so retry the put until the new server answers, for at most 20 s.
  kvrdma::Status again_put;
  const auto give_up = Steady::now() + std::chrono::seconds(20);
  do {
    again_put = c->put("k", "w");
  } while (again_put.code() == Code::kUnavailable && Steady::now() < give_up);
  INFO(again_put.to_string());
  REQUIRE(again_put.is_ok());
  CHECK(c->get_copy("k").value() == "w");
}

TEST_CASE("get stream: a silent server costs a GET its deadline, not more", "[stream][mockonly]") {
  FakeServer fake(FakeServer::kSilent);
  auto stub = stub_for(fake.address());
  GetStreams streams(stub.get(), "", 2);
  kvrdma::v1::GetReply reply;
  auto t0 = Steady::now();
  auto r = streams.get(get_request(1, "k"), &reply, t0 + std::chrono::milliseconds(300));
  auto took = Steady::now() - t0;
  CHECK(r.outcome == Outcome::kFailed);
  CHECK(r.status.code() == Code::kDeadlineExceeded);
  CHECK(took >= std::chrono::milliseconds(300));
  CHECK(took < std::chrono::seconds(5));
  CHECK(streams.open_streams() == 0);  // the timed-out stream was cancelled and closed

  // Gone mid-stream: a GET waiting on the silent server fails when the server shuts down.
  auto pending = std::async(std::launch::async, [&] {
    kvrdma::v1::GetReply rep;
    return streams.get(get_request(1, "k"), &rep, Steady::now() + std::chrono::seconds(60));
  });
  REQUIRE(pending.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);
  fake.shutdown();
  REQUIRE(pending.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  auto gone = pending.get();
  CHECK(gone.outcome == Outcome::kFailed);
  CHECK(gone.status.code() == Code::kUnavailable);
}

TEST_CASE("get stream: a reply to another request fails the GET as INTERNAL",
          "[stream][mockonly]") {
  FakeServer fake(FakeServer::kWrongId);
  auto stub = stub_for(fake.address());
  GetStreams streams(stub.get(), "", 2);
  kvrdma::v1::GetReply reply;
  auto r = streams.get(get_request(1, "k"), &reply, Steady::now() + std::chrono::seconds(20));
  CHECK(r.outcome == Outcome::kFailed);
  CHECK(r.status.code() == Code::kInternal);
  CHECK(r.status.message().find("request") != std::string::npos);
}

TEST_CASE("get stream: a server without GetStream sends GETs to unary calls",
          "[stream][mockonly]") {
  FakeServer fake(FakeServer::kMissing);
  auto stub = stub_for(fake.address());
  GetStreams streams(stub.get(), "", 2);
  kvrdma::v1::GetReply reply;
  auto deadline = Steady::now() + std::chrono::seconds(20);
  CHECK(streams.get(get_request(1, "k"), &reply, deadline).outcome == Outcome::kNoStream);
  CHECK(streams.get(get_request(1, "k"), &reply, deadline).outcome == Outcome::kNoStream);
  CHECK(streams.streams_opened() == 1);  // asked once, then remembered
}

TEST_CASE("get stream: threads sharing a client over few streams get their own values",
          "[stream]") {
  ServerProcess server({"--memory-mb", "64"});
  // 2 streams for 8 threads: most GETs find every stream busy and go as unary calls.
  auto c = connect(server.address(), 2);
  constexpr int kKeys = 32;
  std::vector<std::string> values;
  for (int i = 0; i < kKeys; ++i) {
    // Small ones inline, every fourth above the inline threshold (a transport write).
    values.push_back(pattern(i % 4 == 3 ? (100 << 10) + i : 64 + i, static_cast<unsigned>(i)));
    REQUIRE(c->put("key-" + std::to_string(i), values.back()).is_ok());
  }
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < 100; ++n) {
        int i = (t * 7 + n) % kKeys;
        auto v = c->get("key-" + std::to_string(i));
        if (!v) {
          ++failed;
        } else if (v->str() != values[i]) {
          ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failed == 0);
  CHECK(wrong == 0);
}

TEST_CASE("get stream: a GetMany rides the stream; its errors are its own", "[stream][batch]") {
  TwoValues f;
  auto& [server, c, big, stub, streams, deadline, session] = f;

  kvrdma::v1::GetManyRequest req;
  req.set_session_id(session);
  for (const char* key : {"small", "absent", "big"}) req.add_items()->set_key(key);
  kvrdma::v1::GetManyReply reply;
  auto r = streams.get_many(req, &reply, deadline);
  REQUIRE(r.outcome == Outcome::kDone);
  REQUIRE(r.status.is_ok());
  REQUIRE(reply.results_size() == 3);
  CHECK(reply.results(0).is_inline());
  CHECK(reply.results(0).value() == "value");
  CHECK(reply.results(1).status().code() == static_cast<uint32_t>(Code::kNotFound));
  CHECK_FALSE(reply.results(2).written());  // no space offered: the size comes back
  CHECK(reply.results(2).value_len() == big.size());

  // A whole-call error (unknown session) is the request's status; the stream stays open.
  req.set_session_id(session ^ 0x5a5a);
  r = streams.get_many(req, &reply, deadline);
  CHECK(r.outcome == Outcome::kDone);
  CHECK(r.status.code() == Code::kFailedPrecondition);
  kvrdma::v1::GetReply one;
  r = streams.get(get_request(session, "small"), &one, deadline);
  CHECK(r.outcome == Outcome::kDone);
  CHECK(one.value() == "value");
  CHECK(streams.streams_opened() == 1);

  // A request with no body is refused by itself, on a stream that then answers the next one.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto raw = stub->GetStream(&ctx);
  kvrdma::v1::StreamGetRequest empty;
  empty.set_request_id(41);
  REQUIRE(raw->Write(empty));
  kvrdma::v1::StreamGetReply answer;
  REQUIRE(raw->Read(&answer));
  CHECK(answer.request_id() == 41);
  CHECK(answer.status().code() == static_cast<uint32_t>(Code::kInvalidArgument));
  kvrdma::v1::StreamGetRequest next;
  next.set_request_id(42);
  *next.mutable_get() = get_request(session, "small");
  REQUIRE(raw->Write(next));
  REQUIRE(raw->Read(&answer));
  CHECK(answer.request_id() == 42);
  CHECK(answer.get().value() == "value");
  raw->WritesDone();
  CHECK(raw->Finish().ok());
}

TEST_CASE("get stream: get_many gives the same answers over streams and over unary calls",
          "[stream][batch]") {
  ServerProcess server({"--memory-mb", "64"});
  auto streamed = connect(server.address(), 16);
  auto unary = connect(server.address(), 0);
  std::vector<std::string> keys, values;
  for (int i = 0; i < 40; ++i) {
    keys.push_back("k" + std::to_string(i));
    // Inline, at the threshold, pushed, and absent (every fourth key is never stored).
    values.push_back(pattern(i % 3 == 0 ? 100 : i % 3 == 1 ? 64 << 10 : 300 << 10, unsigned(i)));
    if (i % 4 != 3) REQUIRE(streamed->put(keys.back(), values.back()).is_ok());
  }
  std::vector<std::string_view> ask(keys.begin(), keys.end());
  for (Client* c : {streamed.get(), unary.get()}) {
    for (int round = 0; round < 2; ++round) {  // the second round knows the large sizes
      auto got = c->get_many(ask);
      REQUIRE(got.size() == keys.size());
      for (size_t i = 0; i < keys.size(); ++i) {
        INFO(keys[i] << " round " << round << ": " << got[i].status().to_string());
        if (i % 4 == 3) {
          CHECK(got[i].status().code() == Code::kNotFound);
        } else {
          REQUIRE(got[i].is_ok());
          CHECK(got[i]->str() == values[i]);
        }
      }
    }
  }
}
