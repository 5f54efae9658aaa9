// Caller memory in cluster mode: two kv-server nodes over a throwaway etcd; each owner writes its
// keys into their spots of one allocated block (README.md "Caller memory").
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "integration/cluster_harness.h"

namespace kvrdma::testing {

TEST_CASE("callermem cluster: get_many_into and put_many_from across two nodes", "[callermem]") {
  REQUIRE(etcd_available());
  TestCluster cl({.name_prefix = "cm", .memory_mb = 64, .client_buffer_bytes = 16ull << 20});
  cl.start(1);
  cl.start(2);
  auto c = cl.client();
  wait_settled(*c, {1, 2});

  auto block = c->allocate(16u << 20);
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
  auto put = c->put_many_from(puts);
  for (size_t i = 0; i < put.size(); ++i) {
    INFO("put " << i << ": " << put[i].to_string());
    CHECK(put[i].is_ok());
  }
  // Both nodes hold a share.
  auto info = c->cluster();
  REQUIRE(info.is_ok());
  for (const auto& n : info->nodes) CHECK(n.keys > 0);
  auto got = c->get_many_into(gets);
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("get " << i << ": " << got[i].status().to_string());
    REQUIRE(got[i].is_ok());
    CHECK(*got[i] == values[i].size());
    CHECK(std::string(reinterpret_cast<const char*>(block->data()) + gets[i].offset,
                      values[i].size()) == values[i]);
  }
  std::memset(block->data() + (12u << 20), 0, values[0].size());
  auto one = c->get_into(keys[0], *block, 12u << 20, values[0].size());
  REQUIRE(one.is_ok());
  CHECK(std::string(reinterpret_cast<const char*>(block->data()) + (12u << 20), values[0].size()) ==
        values[0]);
}

}  // namespace kvrdma::testing
