// Caller memory (README.md "Caller memory"): get_into / put_from and their batches against a
// kv-server process, over the mock and (tests/callermem.cmake) libfabric tcp and shm.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "integration/harness.h"
#include "integration/raw_rpc.h"
#include "integration/test_client.h"
#include "kvrdma/client.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using kvrdma::GetIntoItem;
using kvrdma::MemoryHandle;
using kvrdma::PutFromItem;
using kvrdma::Status;
using namespace kvrdma::testing;

namespace {

constexpr uint64_t kInline = 4096;

std::unique_ptr<Client> connect(const ServerProcess& server) {
  return connect_client(test_client_options(server.address(), 16ull << 20));
}

ServerProcess start_server() {
  return ServerProcess({"--memory-mb", "128", "--inline-threshold", std::to_string(kInline)});
}

MemoryHandle allocate(Client& c, size_t len) {
  auto h = c.allocate(len);
  INFO(h.status().to_string());
  REQUIRE(h.is_ok());
  return std::move(h).value();
}

std::string bytes_at(const MemoryHandle& h, size_t offset, size_t len) {
  return std::string(reinterpret_cast<const char*>(h.data()) + offset, len);
}

void fill(MemoryHandle& h, size_t offset, const std::string& s) {
  std::memcpy(h.data() + offset, s.data(), s.size());
}

}  // namespace

TEST_CASE("callermem: get_into and put_from round trip byte for byte at offsets", "[callermem]") {
  ServerProcess server = start_server();
  auto c = connect(server);
  MemoryHandle block = allocate(*c, 8u << 20);
  CHECK(block.size() == 8u << 20);
  CHECK(block.kind() == kvrdma::MemoryKind::kHost);
  for (size_t size : {size_t{0}, size_t{1}, size_t{100}, size_t{kInline}, size_t{kInline + 1},
                      size_t{64} << 10, size_t{1} << 20, size_t{3} << 20}) {
    INFO("size " << size);
    const std::string value = pattern(size, static_cast<unsigned>(size % 251));
    const std::string key = "k" + std::to_string(size);
    // Published from offset 7, read back into offset 4 MiB + 3, and by the plain API.
    fill(block, 7, value);
    REQUIRE(c->put_from(key, block, 7, size).is_ok());
    CHECK(c->get_copy(key).value() == value);
    std::memset(block.data() + (4u << 20), 0xAB, (4u << 20) - 3);
    auto n = c->get_into(key, block, (4u << 20) + 3, size + 5);
    INFO(n.status().to_string());
    REQUIRE(n.is_ok());
    CHECK(*n == size);
    CHECK(bytes_at(block, (4u << 20) + 3, size) == value);
    // Nothing beyond the value was touched.
    CHECK(bytes_at(block, (4u << 20) + 3 + size, 5) == std::string(5, '\xAB'));
  }
}

TEST_CASE("callermem: a value larger than the capacity is FAILED_PRECONDITION, nothing written",
          "[callermem]") {
  ServerProcess server = start_server();
  auto c = connect(server);
  MemoryHandle block = allocate(*c, 1u << 20);
  for (size_t size : {size_t{100}, size_t{200} << 10}) {
    INFO("size " << size);
    REQUIRE(c->put("v", pattern(size, 3)).is_ok());
    std::memset(block.data(), 0x5A, block.size());
    uint64_t needed = 0;
    auto n = c->get_into("v", block, 10, size - 1, &needed);
    REQUIRE_FALSE(n.is_ok());
    CHECK(n.status().code() == Code::kFailedPrecondition);
    CHECK_THAT(n.status().message(), Catch::Contains(std::to_string(size) + " bytes"));
    CHECK(needed == size);
    CHECK(bytes_at(block, 0, block.size()) == std::string(block.size(), '\x5A'));
  }
  CHECK(c->get_into("absent", block, 0, 100).status().code() == Code::kNotFound);
}

TEST_CASE("callermem: bad handles and spans are INVALID_ARGUMENT before anything is sent",
          "[callermem]") {
  ServerProcess server = start_server();
  auto c = connect(server);
  REQUIRE(c->put("k", pattern(100, 1)).is_ok());
  MemoryHandle block = allocate(*c, 4096);
  SECTION("offset + length beyond the handle") {
    CHECK(c->get_into("k", block, 4000, 200).status().code() == Code::kInvalidArgument);
    CHECK(c->get_into("k", block, 5000, 0).status().code() == Code::kInvalidArgument);
    CHECK(c->put_from("k", block, 4000, 200).code() == Code::kInvalidArgument);
    CHECK(c->put_from("k", block, SIZE_MAX, 2).code() == Code::kInvalidArgument);
    CHECK(c->get_copy("k").value() == pattern(100, 1));  // the stored value is intact
  }
  SECTION("a released or empty handle") {
    block.release();
    CHECK_FALSE(block.valid());
    CHECK(block.data() == nullptr);
    Status s = c->put_from("k", block, 0, 1);
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK_THAT(s.message(), Catch::Contains("released"));
    CHECK(c->get_into("k", MemoryHandle(), 0, 1).status().code() == Code::kInvalidArgument);
  }
  SECTION("a handle of another client") {
    auto other = connect(server);
    CHECK(other->get_into("k", block, 0, 100).status().code() == Code::kInvalidArgument);
  }
  SECTION("an empty key") {
    CHECK(c->get_into("", block, 0, 100).status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE(
    "callermem: register_memory: the mock refuses it naming allocate, libfabric takes "
    "any host memory",
    "[callermem]") {
  ServerProcess server = start_server();
  auto c = connect(server);
  std::vector<char> mine(3u << 20);
  auto h = c->register_memory(mine.data() + 1, mine.size() - 1);
  if (test_provider().empty()) {
    REQUIRE_FALSE(h.is_ok());
    CHECK(h.status().code() == Code::kFailedPrecondition);
    CHECK_THAT(h.status().message(), Catch::Contains("Client::allocate"));
    return;
  }
  INFO(h.status().to_string());
  REQUIRE(h.is_ok());
  CHECK(h->data() == reinterpret_cast<std::byte*>(mine.data() + 1));
  const std::string value = pattern(1u << 20, 9);
  std::memcpy(mine.data() + 11, value.data(), value.size());
  REQUIRE(c->put_from("reg", *h, 10, value.size()).is_ok());
  CHECK(c->get_copy("reg").value() == value);
  auto n = c->get_into("reg", *h, (2u << 20) - 1, value.size());
  REQUIRE(n.is_ok());
  CHECK(std::string(mine.data() + (2u << 20), value.size()) == value);
  // The span form finds the registered memory and writes there.
  std::memset(mine.data() + 100, 0, value.size());
  std::span<std::byte> spot(reinterpret_cast<std::byte*>(mine.data() + 100), value.size());
  REQUIRE(c->get_into("reg", spot).is_ok());
  CHECK(std::string(mine.data() + 100, value.size()) == value);
}

TEST_CASE("callermem: get_many_into across sizes, with misses and a too-small spot",
          "[callermem]") {
  ServerProcess server = start_server();
  auto c = connect(server);
  MemoryHandle a = allocate(*c, 16u << 20), b = allocate(*c, 1u << 20);
  std::vector<size_t> sizes = {10, kInline, kInline + 1, 64u << 10, 1u << 20, 2u << 20};
  std::vector<std::string> keys, values;
  keys.reserve(sizes.size());  // the items point into them
  for (size_t i = 0; i < sizes.size(); ++i) {
    keys.push_back("m" + std::to_string(i));
    values.push_back(pattern(sizes[i], static_cast<unsigned>(i + 40)));
    REQUIRE(c->put(keys[i], values[i]).is_ok());
  }
  std::vector<GetIntoItem> items;
  std::vector<uint64_t> lens(sizes.size() + 2, 7);
  size_t off = 1;
  for (size_t i = 0; i < sizes.size(); ++i) {
    items.push_back({keys[i], &a, off, sizes[i], &lens[i]});
    off += sizes[i] + 3;
  }
  items.push_back({"missing", &a, off, 100, &lens[sizes.size()]});
  items.push_back({keys[4], &b, 0, 1000, &lens[sizes.size() + 1]});  // 1 MiB into 1000 bytes
  std::memset(b.data(), 0x11, b.size());
  auto got = c->get_many_into(items);
  REQUIRE(got.size() == items.size());
  off = 1;
  for (size_t i = 0; i < sizes.size(); ++i) {
    INFO("item " << i << ": " << got[i].status().to_string());
    REQUIRE(got[i].is_ok());
    CHECK(*got[i] == sizes[i]);
    CHECK(lens[i] == sizes[i]);
    CHECK(bytes_at(a, off, sizes[i]) == values[i]);
    off += sizes[i] + 3;
  }
  CHECK(got[sizes.size()].status().code() == Code::kNotFound);
  CHECK(got[sizes.size() + 1].status().code() == Code::kFailedPrecondition);
  CHECK(lens[sizes.size() + 1] == sizes[4]);
  CHECK(bytes_at(b, 0, b.size()) == std::string(b.size(), '\x11'));
}

TEST_CASE("callermem: put_many_from publishes small and large values from caller memory",
          "[callermem]") {
  ServerProcess server = start_server();
  auto c = connect(server);
  MemoryHandle a = allocate(*c, 8u << 20);
  std::vector<size_t> sizes = {1, 500, kInline + 1, 256u << 10, 1u << 20, 1u << 20};
  std::vector<std::string> keys, values;
  keys.reserve(sizes.size());  // the items point into them
  std::vector<PutFromItem> items;
  size_t off = 5;
  for (size_t i = 0; i < sizes.size(); ++i) {
    keys.push_back("p" + std::to_string(i));
    values.push_back(pattern(sizes[i], static_cast<unsigned>(i + 70)));
    fill(a, off, values[i]);
    items.push_back({keys[i], &a, off, sizes[i]});
    off += sizes[i];
  }
  items.push_back({"", &a, 0, 1});  // a bad item fails alone
  auto put = c->put_many_from(items);
  REQUIRE(put.size() == items.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    INFO("item " << i << ": " << put[i].to_string());
    CHECK(put[i].is_ok());
    CHECK(c->get_copy(keys[i]).value() == values[i]);
  }
  CHECK(put.back().code() == Code::kInvalidArgument);
}

TEST_CASE("callermem: the server refuses a released or unknown destination region", "[callermem]") {
  ServerProcess server = start_server();
  auto c = connect(server);
  const std::string big = pattern(100u << 10, 5);
  REQUIRE(c->put("big", big).is_ok());
  {
    MemoryHandle block = allocate(*c, 1u << 20);
    REQUIRE(c->get_into("big", block, 0, big.size()).is_ok());  // announces it: region 1
  }  // released: the server forgets region 1
  RawRpc raw(server.address());
  for (uint64_t region : {uint64_t{1}, uint64_t{999}}) {
    kvrdma::v1::GetRequest req;
    req.set_session_id(c->session_id());
    req.set_key("big");
    req.set_dest_region(region);
    req.set_dest_capacity(big.size());
    kvrdma::v1::GetReply reply;
    grpc::Status s = raw.call(&kvrdma::v1::KvCache::Stub::Get, req, &reply);
    CHECK(s.error_code() == grpc::INVALID_ARGUMENT);
    CHECK_THAT(s.error_message(), Catch::Contains("is not registered with this session"));
  }
  CHECK(c->get_copy("big").value() == big);
}

TEST_CASE("callermem: the plain put of a large value round trips (pipelined copy)", "[callermem]") {
  ServerProcess server = start_server();
  auto c = connect(server);  // 16 MiB buffer: a 40 MiB value goes in chunks
  const std::string v = pattern(40u << 20, 77);
  REQUIRE(c->put("large", v).is_ok());
  MemoryHandle block = allocate(*c, v.size());
  auto n = c->get_into("large", block, 0, v.size());
  INFO(n.status().to_string());
  REQUIRE(n.is_ok());
  CHECK(bytes_at(block, 0, v.size()) == v);
}

TEST_CASE("callermem: a session the server dropped is re-opened and the region announced again",
          "[callermem]") {
  ServerProcess server = start_server();
  auto c = connect(server);
  MemoryHandle block = allocate(*c, 4u << 20);
  const std::string large = pattern(300000, 6), small = pattern(100, 7);
  fill(block, 0, large);
  fill(block, 1u << 20, small);
  // End the client's session behind its back, as a server restart or lease expiry would.
  auto drop_session = [&] {
    RawRpc raw(server.address());
    kvrdma::v1::GoodbyeRequest bye;
    bye.set_session_id(c->session_id());
    kvrdma::v1::GoodbyeReply reply;
    REQUIRE(raw.call(&kvrdma::v1::KvCache::Stub::Goodbye, bye, &reply).ok());
  };
  REQUIRE(c->put_from("l", block, 0, large.size()).is_ok());  // announces the block
  drop_session();
  Status put = c->put_from("l2", block, 0, large.size());
  INFO(put.to_string());
  REQUIRE(put.is_ok());
  drop_session();
  auto n = c->get_into("l2", block, 2u << 20, large.size());
  INFO(n.status().to_string());
  REQUIRE(n.is_ok());
  CHECK(bytes_at(block, 2u << 20, large.size()) == large);
  drop_session();
  std::vector<PutFromItem> puts{{"s", &block, 1u << 20, small.size()},
                                {"l3", &block, 0, large.size()}};
  for (const auto& s : c->put_many_from(puts)) CHECK(s.is_ok());
  drop_session();
  std::memset(block.data() + (2u << 20), 0, 1u << 20);
  std::vector<GetIntoItem> gets{{"l3", &block, 2u << 20, large.size()},
                                {"s", &block, 3u << 20, small.size()}};
  auto got = c->get_many_into(gets);
  REQUIRE(got[0].is_ok());
  REQUIRE(got[1].is_ok());
  CHECK(bytes_at(block, 2u << 20, large.size()) == large);
  CHECK(bytes_at(block, 3u << 20, small.size()) == small);
}

TEST_CASE("callermem: a moved-from handle is empty and the moved-to one works", "[callermem]") {
  ServerProcess server = start_server();
  auto c = connect(server);
  MemoryHandle a = allocate(*c, 1u << 20);
  std::byte* data = a.data();
  MemoryHandle b = std::move(a);
  CHECK_FALSE(a.valid());
  CHECK(a.data() == nullptr);
  CHECK(a.size() == 0);
  CHECK(b.data() == data);
  const std::string v = pattern(70000, 3);
  fill(b, 0, v);
  REQUIRE(c->put_from("moved", b, 0, v.size()).is_ok());
  CHECK(c->put_from("moved", a, 0, 1).code() == Code::kInvalidArgument);
  MemoryHandle d = allocate(*c, 4096);
  d = std::move(b);  // d's own memory is released, b's taken over
  CHECK(d.data() == data);
  CHECK(c->get_into("moved", d, 100000, v.size()).is_ok());
  CHECK(bytes_at(d, 100000, v.size()) == v);
}
