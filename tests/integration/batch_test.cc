// Client::get_many / put_many against a kv-server running as a separate process.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "integration/harness.h"
#include "integration/raw_rpc.h"
#include "integration/test_client.h"
#include "kvrdma/client.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using kvrdma::KeyValue;
using namespace kvrdma::testing;

namespace {

std::unique_ptr<Client> connect(const ServerProcess& server, uint64_t buffer_mb = 64) {
  return connect_client(test_client_options(server.address(), buffer_mb << 20));
}

std::vector<std::string_view> views(const std::vector<std::string>& v) {
  return {v.begin(), v.end()};
}

}  // namespace

TEST_CASE("batch: empty batches give empty answers", "[batch]") {
  ServerProcess server({"--memory-mb", "16"});
  auto c = connect(server, 8);
  CHECK(c->get_many({}).empty());
  CHECK(c->put_many({}).empty());
}

TEST_CASE("batch: present, absent, expired, duplicate and empty keys in one batch", "[batch]") {
  ServerProcess server({"--memory-mb", "64", "--inline-threshold", "4096"});
  auto c = connect(server, 16);
  std::string a = pattern(100, 1), b = pattern(200000, 2);
  std::vector<KeyValue> items{{"a", a}, {"b", b}, {"", "x"}, {"short", "s"}};
  auto put = c->put_many(items);
  REQUIRE(put.size() == 4);
  CHECK(put[0].is_ok());
  CHECK(put[1].is_ok());
  CHECK(put[2].code() == Code::kInvalidArgument);
  CHECK(put[3].is_ok());
  REQUIRE(c->put("gone", "soon", 1).is_ok());
  // Wait for the expiry by reading until the key is gone (bounded), never by sleeping.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (c->get("gone").is_ok() && std::chrono::steady_clock::now() < until) {
  }
  std::vector<std::string_view> keys{"a", "missing", "b", "gone", "a", "", "b", "short"};
  auto got = c->get_many(keys);
  REQUIRE(got.size() == keys.size());
  REQUIRE(got[0].is_ok());
  CHECK(got[0]->str() == a);
  CHECK_FALSE(got[0]->in_receive_buffer());
  CHECK(got[1].status().code() == Code::kNotFound);
  REQUIRE(got[2].is_ok());
  CHECK(got[2]->str() == b);
  CHECK(got[2]->in_receive_buffer());
  CHECK(got[3].status().code() == Code::kNotFound);
  REQUIRE(got[4].is_ok());
  CHECK(got[4]->str() == a);
  CHECK(got[5].status().code() == Code::kInvalidArgument);
  REQUIRE(got[6].is_ok());
  CHECK(got[6]->str() == b);
  CHECK(got[6]->data() != got[2]->data());  // duplicates get views of their own
  REQUIRE(got[7].is_ok());
  CHECK(got[7]->str() == "s");
}

TEST_CASE("batch: 1 B to 16 MiB values mixed in one batch, byte-exact", "[batch]") {
  ServerProcess server({"--memory-mb", "128", "--inline-threshold", "4096"});
  auto c = connect(server, 64);
  std::vector<size_t> sizes{1, 16 << 20, 63, 4096, 4097, 1 << 20, 0, 12345, 3 << 20};
  std::vector<std::string> keys, values;
  for (size_t i = 0; i < sizes.size(); ++i) {
    keys.push_back("k" + std::to_string(i));
    values.push_back(pattern(sizes[i], static_cast<unsigned>(i + 7)));
  }
  std::vector<KeyValue> items;
  for (size_t i = 0; i < keys.size(); ++i) items.push_back({keys[i], values[i]});
  for (const auto& s : c->put_many(items)) CHECK(s.to_string() == "OK");
  auto before = c->stats();
  REQUIRE(before.is_ok());
  auto kv = views(keys);
  auto got = c->get_many(kv);
  REQUIRE(got.size() == keys.size());
  uint64_t large = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO("key " << keys[i] << " of " << sizes[i] << " bytes");
    REQUIRE(got[i].is_ok());
    CHECK(got[i]->size() == sizes[i]);
    CHECK(got[i]->str() == values[i]);
    CHECK(got[i]->in_receive_buffer() == (sizes[i] > 4096));
    if (sizes[i] > 4096) large += sizes[i];
  }
  auto after = c->stats();
  REQUIRE(after.is_ok());
  CHECK(after->bytes_transport_written - before->bytes_transport_written == large);
  CHECK(after->pinned == 0);
}

TEST_CASE("batch: a batch larger than the receive buffer completes", "[batch]") {
  ServerProcess server({"--memory-mb", "96", "--inline-threshold", "4096"});
  auto c = connect(server, 8);  // 8 MiB buffer, 30 MiB of values
  std::vector<std::string> keys, values;
  for (int i = 0; i < 10; ++i) {
    keys.push_back("big" + std::to_string(i));
    values.push_back(pattern(3 << 20, 100 + i));
    REQUIRE(c->put(keys.back(), values.back()).is_ok());
  }
  auto kv = views(keys);
  auto got = c->get_many(kv);
  REQUIRE(got.size() == keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO(got[i].status().to_string());
    REQUIRE(got[i].is_ok());
    CHECK(got[i]->str() == values[i]);
  }
  got.clear();  // gives the buffer space back (views hold it)
  // A value larger than the whole buffer fails alone, naming the size.
  std::string huge = pattern(9 << 20, 5);
  REQUIRE(c->put("huge", huge).is_ok());
  std::vector<std::string_view> two{"huge", "big0"};
  auto mixed = c->get_many(two);
  CHECK(mixed[0].status().code() == Code::kFailedPrecondition);
  INFO(mixed[1].status().to_string());
  REQUIRE(mixed[1].is_ok());
  CHECK(mixed[1]->str() == values[0]);
}

TEST_CASE("batch: thousands of small items split over several calls", "[batch]") {
  ServerProcess server({"--memory-mb", "64", "--inline-threshold", "4096"});
  auto c = connect(server, 8);
  std::vector<std::string> keys, values;
  for (int i = 0; i < 3000; ++i) {
    keys.push_back("s" + std::to_string(i));
    values.push_back(pattern(1000 + i % 3000, i));
  }
  std::vector<KeyValue> items;
  for (size_t i = 0; i < keys.size(); ++i) items.push_back({keys[i], values[i]});
  auto put = c->put_many(items);
  for (const auto& s : put) REQUIRE(s.is_ok());
  auto kv = views(keys);
  auto got = c->get_many(kv);
  for (size_t i = 0; i < keys.size(); ++i) {
    REQUIRE(got[i].is_ok());
    REQUIRE(got[i]->str() == values[i]);
  }
}

TEST_CASE("batch: concurrent batches from threads share one client", "[batch]") {
  ServerProcess server({"--memory-mb", "128", "--inline-threshold", "4096"});
  auto c = connect(server, 8);
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::string> keys, values;
      for (int i = 0; i < 12; ++i) {
        keys.push_back("t" + std::to_string(t) + "-" + std::to_string(i));
        values.push_back(pattern(i % 2 ? 1 << 20 : 300, t * 100 + i));
      }
      std::vector<KeyValue> items;
      for (size_t i = 0; i < keys.size(); ++i) items.push_back({keys[i], values[i]});
      for (int round = 0; round < 5; ++round) {
        for (const auto& s : c->put_many(items)) failures[t] += !s.is_ok();
        auto kv = views(keys);
        auto got = c->get_many(kv);
        for (size_t i = 0; i < keys.size(); ++i) {
          failures[t] += !got[i].is_ok() || got[i]->str() != values[i];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) CHECK(failures[t] == 0);
}

TEST_CASE("batch: the server enforces per-call limits and checks every item", "[batch]") {
  ServerProcess server({"--memory-mb", "64", "--inline-threshold", "4096"});
  auto c = connect(server, 8);
  REQUIRE(c->put("present", "p").is_ok());
  RawRpc raw(server.address());
  using Stub = kvrdma::v1::KvCache::Stub;
  {
    kvrdma::v1::GetManyRequest req;
    req.set_session_id(c->session_id());
    for (int i = 0; i < 4097; ++i) req.add_items()->set_key("k");
    kvrdma::v1::GetManyReply reply;
    auto s = raw.call(&Stub::GetMany, req, &reply);
    CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(s.error_message().find("4096") != std::string::npos);
  }
  {
    kvrdma::v1::PutManyRequest req;
    req.set_session_id(c->session_id());
    for (int i = 0; i < 3; ++i) {
      auto* item = req.add_items();
      item->set_key("big" + std::to_string(i));
      item->set_value(std::string(1100 << 10, 'x'));
    }
    kvrdma::v1::PutManyReply reply;
    auto s = raw.call(&Stub::PutMany, req, &reply);
    CHECK(s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  {
    kvrdma::v1::PutManyRequest req;
    req.set_session_id(c->session_id());
    auto* big = req.add_items();
    big->set_key("over-inline");
    big->set_value(std::string(5000, 'y'));
    auto* ok = req.add_items();
    ok->set_key("fine");
    ok->set_value("f");
    kvrdma::v1::PutManyReply reply;
    REQUIRE(raw.call(&Stub::PutMany, req, &reply).ok());
    REQUIRE(reply.results_size() == 2);
    CHECK(reply.results(0).code() == static_cast<uint32_t>(Code::kInvalidArgument));
    CHECK(reply.results(1).code() == 0);
  }
  {
    // A destination outside the registered region is refused for that item only.
    REQUIRE(c->put("large", std::string(10000, 'z')).is_ok());
    kvrdma::v1::GetManyRequest req;
    req.set_session_id(c->session_id());
    auto* bad = req.add_items();
    bad->set_key("large");
    bad->set_dest_offset(c->buffer_size());
    bad->set_dest_capacity(10000);
    req.add_items()->set_key("present");
    kvrdma::v1::GetManyReply reply;
    REQUIRE(raw.call(&Stub::GetMany, req, &reply).ok());
    REQUIRE(reply.results_size() == 2);
    CHECK(reply.results(0).status().code() == static_cast<uint32_t>(Code::kInvalidArgument));
    CHECK(reply.results(1).value() == "p");
  }
  CHECK(c->get_copy("fine").is_ok());
  CHECK(c->get_copy("over-inline").status().code() == Code::kNotFound);
}

TEST_CASE("batch: a session the server dropped is re-opened and the batch completes", "[batch]") {
  ServerProcess server({"--memory-mb", "64", "--inline-threshold", "4096"});
  auto c = connect(server, 16);
  const std::string small = pattern(100, 5), large = pattern(300000, 6);
  std::vector<KeyValue> items{{"s", small}, {"l", large}};
  for (const auto& s : c->put_many(items)) REQUIRE(s.is_ok());
  // End the client's session behind its back, as a server restart or lease expiry would.
  auto drop_session = [&] {
    RawRpc raw(server.address());
    kvrdma::v1::GoodbyeRequest bye;
    bye.set_session_id(c->session_id());
    kvrdma::v1::GoodbyeReply reply;
    REQUIRE(raw.call(&kvrdma::v1::KvCache::Stub::Goodbye, bye, &reply).ok());
  };
  const uint64_t first = c->session_id();
  drop_session();
  std::vector<std::string_view> keys{"s", "l", "missing"};
  auto got = c->get_many(keys);
  REQUIRE(got.size() == 3);
  REQUIRE(got[0].is_ok());
  CHECK(got[0]->str() == small);
  REQUIRE(got[1].is_ok());
  CHECK(got[1]->str() == large);
  CHECK(got[2].status().code() == Code::kNotFound);
  CHECK(c->session_id() != first);

  const uint64_t second = c->session_id();
  drop_session();
  std::vector<KeyValue> again{{"s", large}, {"n", small}};
  for (const auto& s : c->put_many(again)) CHECK(s.is_ok());
  CHECK(c->session_id() != second);
  CHECK(c->get("s")->str() == large);
  CHECK(c->get("n")->str() == small);
}
