// Caller memory in cluster mode: two kv-server nodes over a throwaway etcd; each owner writes its
// keys into their spots of one allocated block (README.md "Caller memory").
#include <signal.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "etcd_process.h"
#include "integration/harness.h"
#include "kvrdma/client.h"
#include "kvrdma/cluster.h"

namespace kvrdma::testing {
namespace {

using namespace std::chrono_literals;

// True when both nodes own slots and none moves.
bool settled(const ClusterInfo& info) {
  if (info.epoch == 0 || info.moving_slots != 0) return false;
  int owners = 0;
  uint64_t slots = 0;
  for (const auto& n : info.nodes) {
    owners += n.slots > 0 ? 1 : 0;
    slots += n.slots;
  }
  return owners == 2 && slots == 16384;
}

}  // namespace

TEST_CASE("callermem cluster: get_many_into and put_many_from across two nodes", "[callermem]") {
  REQUIRE(etcd_available());
  auto etcd = EtcdProcess::start();
  REQUIRE(etcd.is_ok());
  auto node = [&](uint32_t id) {
    return std::make_unique<ServerProcess>(
        std::vector<std::string>{"--cluster", "cm" + std::to_string(::getpid()), "--etcd-endpoints",
                                 (*etcd)->endpoint(), "--node-id", std::to_string(id),
                                 "--node-lease-ms", "2000", "--memory-mb", "64"});
  };
  auto n1 = node(1), n2 = node(2);
  ClientOptions o;
  o.server_addr = n1->address() + "," + n2->address();
  o.timeout_ms = 5000;
  o.buffer_bytes = 16ull << 20;
  apply_test_transport(o.transport);
  auto c = Client::connect(o);
  INFO(c.status().to_string());
  REQUIRE(c.is_ok());
  // Wait (bounded) for both nodes to own slots; map changes wake the wait.
  const auto until = std::chrono::steady_clock::now() + 30s;
  for (uint64_t version = 0;;) {
    auto info = (*c)->cluster();
    if (info.is_ok() && settled(*info)) break;
    REQUIRE(std::chrono::steady_clock::now() < until);
    auto s = (*c)->stats_after(version, 500ms);
    if (s.is_ok()) version = s->version;
  }

  auto block = (*c)->allocate(16u << 20);
  REQUIRE(block.is_ok());
  std::vector<std::string> keys, values;
  keys.reserve(40);
  std::vector<PutFromItem> puts;
  std::vector<GetIntoItem> gets;
  size_t off = 0;
  for (size_t i = 0; i < 40; ++i) {
    keys.push_back("ck-" + std::to_string(i));
    values.push_back(pattern(i % 4 == 0 ? (200u << 10) : 100 + i, static_cast<unsigned>(i)));
    std::memcpy(block->data() + off, values[i].data(), values[i].size());
    puts.push_back({keys[i], &*block, off, values[i].size()});
    gets.push_back({keys[i], &*block, (8u << 20) + off, values[i].size()});
    off += values[i].size();
  }
  auto put = (*c)->put_many_from(puts);
  for (size_t i = 0; i < put.size(); ++i) {
    INFO("put " << i << ": " << put[i].to_string());
    CHECK(put[i].is_ok());
  }
  // Both nodes hold a share.
  auto info = (*c)->cluster();
  REQUIRE(info.is_ok());
  for (const auto& n : info->nodes) CHECK(n.keys > 0);
  auto got = (*c)->get_many_into(gets);
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("get " << i << ": " << got[i].status().to_string());
    REQUIRE(got[i].is_ok());
    CHECK(*got[i] == values[i].size());
    CHECK(std::string(reinterpret_cast<const char*>(block->data()) + gets[i].offset,
                      values[i].size()) == values[i]);
  }
  std::memset(block->data() + (12u << 20), 0, values[0].size());
  auto one = (*c)->get_into(keys[0], *block, 12u << 20, values[0].size());
  REQUIRE(one.is_ok());
  CHECK(std::string(reinterpret_cast<const char*>(block->data()) + (12u << 20), values[0].size()) ==
        values[0]);
  ::kill(n1->pid(), SIGKILL);  // teardown need not move values
  ::kill(n2->pid(), SIGKILL);
}

}  // namespace kvrdma::testing
