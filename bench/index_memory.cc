// index_memory: server memory the Store spends per key beyond the value bytes, at 1 million keys
// (or --keys N). Stores N keys of --value-bytes each (16 by default) into a Store over a pool
// whose region is mapped up front, then reports two measures:
//   heap:  malloc'd bytes in use after minus before (mallinfo2(): uordblks + hblkhd, i.e. small
//          chunks plus blocks malloc mmap()s on its own, like a big bucket array), per key. This is
//          the index proper (hash nodes, keys, entries, LRU links) plus the pool's own bookkeeping;
//          the pool region is not malloc'd, so value bytes are not in it.
//   rss:   resident set growth (from /proc/self/statm) minus the pool bytes handed out for the
//          values (PoolUsage::used, i.e. value bytes rounded to the pool's size classes), per key.
// Prints one JSON line. Keys are "key:<n>" zero-padded to --key-bytes (11 by default, 11 to 60),
// counted as index memory.
#include <fmt/format.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/clock.h"
#include "memory/memory_pool.h"
#include "store/store.h"

namespace {

uint64_t rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f) {
    if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

uint64_t heap_bytes() {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t keys = 1000000, value_bytes = 16, key_bytes = 11;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--keys") keys = std::stoull(argv[i + 1]);
    else if (k == "--value-bytes") value_bytes = std::stoull(argv[i + 1]);
    else if (k == "--key-bytes") key_bytes = std::clamp<uint64_t>(std::stoull(argv[i + 1]), 11, 60);
    else {
      fmt::print(stderr, "usage: index_memory [--keys N] [--value-bytes B] [--key-bytes K]\n");
      return 2;
    }
  }
  const uint64_t pool_bytes = keys * std::max<uint64_t>(value_bytes * 2, 64) + (64ull << 20);
  void* region = mmap(nullptr, pool_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (region == MAP_FAILED) {
    fmt::print(stderr, "index_memory: cannot map {} bytes for the pool\n", pool_bytes);
    return 1;
  }
  const std::string value(value_bytes, 'v');
  uint64_t heap0 = 0, rss0 = 0, heap1 = 0, rss1 = 0, pool_used = 0;
  double secs = 0;
  {
    kvrdma::memory::MemoryPool pool(static_cast<std::byte*>(region), pool_bytes);
    kvrdma::store::Store store(pool, kvrdma::SteadyClock::instance(), {});
    heap0 = heap_bytes();
    rss0 = rss_bytes();
    auto t0 = std::chrono::steady_clock::now();
    char key[64];
    for (uint64_t i = 0; i < keys; ++i) {
      int n = std::snprintf(key, sizeof key, "key:%0*llu", static_cast<int>(key_bytes - 4),
                            static_cast<unsigned long long>(i));
      auto s = store.put(std::string_view(key, n), value, std::chrono::milliseconds(0));
      if (!s.is_ok()) {
        fmt::print(stderr, "index_memory: put #{} failed: {}\n", i, s.message());
        return 1;
      }
    }
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    heap1 = heap_bytes();
    rss1 = rss_bytes();
    pool_used = pool.usage().used;
    if (store.stats().keys != keys) {
      fmt::print(stderr, "index_memory: {} keys stored, {} expected\n", store.stats().keys, keys);
      return 1;
    }
  }
  munmap(region, pool_bytes);
  const double heap_per_key = double(heap1 - heap0) / keys;
  const double rss_per_key = (double(rss1) - double(rss0) - double(pool_used)) / keys;
  fmt::print(
      "{{\"keys\":{},\"value_bytes\":{},\"key_bytes\":{},\"heap_bytes_per_key\":{:.1f},"
      "\"rss_bytes_per_key_beyond_pool\":{:.1f},\"pool_bytes_per_key\":{:.1f},"
      "\"insert_seconds\":{:.3f}}}\n",
      keys, value_bytes, key_bytes, heap_per_key, rss_per_key, double(pool_used) / keys, secs);
  return 0;
}
