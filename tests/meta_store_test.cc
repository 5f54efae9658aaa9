// The MetaStore contract, run against the in-memory store (and, where etcd is installed, a real
// etcd started per test case).
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "cluster/meta_store.h"

namespace kvrdma::cluster {
namespace {

using namespace std::chrono_literals;

TEST_CASE("memory meta store: create-if-absent, CAS, range", "[meta_store]") {
  auto store = MemoryMetaStore::create();
  auto lease = store->grant_lease(1500ms);
  REQUIRE(lease.is_ok());

  auto first = store->create("/p/a", "one", *lease);
  REQUIRE(first.is_ok());
  CHECK(*first);
  MetaEntry existing;
  auto second = store->create("/p/a", "two", 0, &existing);
  REQUIRE(second.is_ok());
  CHECK_FALSE(*second);
  CHECK(existing.value == "one");
  CHECK(existing.lease == *lease);

  auto cas = store->compare_and_swap("/p/a", existing.mod_revision, "three", 0);
  REQUIRE(cas.is_ok());
  CHECK(*cas);
  auto stale = store->compare_and_swap("/p/a", existing.mod_revision, "four", 0);
  REQUIRE(stale.is_ok());
  CHECK_FALSE(*stale);

  REQUIRE(store->put("/p/b", "bee", 0).is_ok());
  REQUIRE(store->put("/q/c", "sea", 0).is_ok());
  auto r = store->range("/p/");
  REQUIRE(r.is_ok());
  REQUIRE(r->entries.size() == 2);
  CHECK(r->entries[0].key == "/p/a");
  CHECK(r->entries[0].value == "three");
  CHECK(r->entries[1].key == "/p/b");
  CHECK(r->entries[1].value == "bee");
}

}  // namespace
}  // namespace kvrdma::cluster
