// The C ABI of caller memory (README.md "Caller memory"): kvrdma_mem over kvrdma::MemoryHandle,
// get_into / put_from and their batches. Every entry point runs through the one guard.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "capi_internal.h"

using namespace kvrdma::capi;

namespace {

// A mem argument: NULL or released is INVALID_ARGUMENT.
kvrdma::Status mem_ok(const kvrdma_mem* m, const std::string& what) {
  if (m == nullptr) return null_argument(what.c_str());
  return kvrdma::Status();
}

kvrdma::Status give_mem(kvrdma::Result<kvrdma::MemoryHandle> h, kvrdma_mem** out) {
  if (!h) return h.status();
  *out = new kvrdma_mem{std::move(h).value()};
  return kvrdma::Status();
}

}  // namespace

extern "C" {

int kvrdma_client_register(kvrdma_client* c, void* ptr, size_t len, int kind, kvrdma_mem** out,
                           char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (out == nullptr) return null_argument("out");
    *out = nullptr;
    if (c == nullptr) return null_argument("client");
    if (ptr == nullptr) return null_argument("ptr");
    if (kind != KVRDMA_MEM_HOST) {
      return kvrdma::Status(kvrdma::Code::kInvalidArgument,
                            "memory kind " + std::to_string(kind) +
                                " is not supported; only KVRDMA_MEM_HOST (0) is");
    }
    return give_mem(c->client->register_memory(ptr, len, kvrdma::MemoryKind::kHost), out);
  });
}

int kvrdma_client_allocate(kvrdma_client* c, size_t len, kvrdma_mem** out, char* errbuf,
                           size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (out == nullptr) return null_argument("out");
    *out = nullptr;
    if (c == nullptr) return null_argument("client");
    return give_mem(c->client->allocate(len), out);
  });
}

void* kvrdma_mem_data(const kvrdma_mem* m) { return m ? m->handle.data() : nullptr; }
size_t kvrdma_mem_size(const kvrdma_mem* m) { return m ? m->handle.size() : 0; }

void kvrdma_mem_release(kvrdma_mem* m) {
  try {
    delete m;
  } catch (...) {
  }
}

int kvrdma_get_into_mem(kvrdma_client* c, const void* key, size_t keylen, kvrdma_mem* m,
                        size_t offset, size_t capacity, size_t* vallen, char* errbuf,
                        size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (vallen != nullptr) *vallen = 0;
    if (c == nullptr) return null_argument("client");
    if (!key_ok(key, keylen)) return null_argument("key");
    if (vallen == nullptr) return null_argument("vallen");
    KVRDMA_RETURN_IF_ERROR(mem_ok(m, "mem"));
    uint64_t len = 0;
    auto n = c->client->get_into({static_cast<const char*>(key), keylen}, m->handle, offset,
                                 capacity, &len);
    *vallen = len;
    return n.status();
  });
}

int kvrdma_put_from(kvrdma_client* c, const void* key, size_t keylen, kvrdma_mem* m, size_t offset,
                    size_t len, uint64_t ttl_ms, char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (c == nullptr) return null_argument("client");
    if (!key_ok(key, keylen)) return null_argument("key");
    KVRDMA_RETURN_IF_ERROR(mem_ok(m, "mem"));
    return c->client->put_from({static_cast<const char*>(key), keylen}, m->handle, offset, len,
                               ttl_ms);
  });
}

int kvrdma_get_many_into(kvrdma_client* c, size_t n, const void* const* keys, const size_t* keylens,
                         kvrdma_mem* const* mems, const size_t* offsets, const size_t* capacities,
                         size_t* vallens, int* codes, char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (vallens != nullptr) std::fill(vallens, vallens + n, size_t{0});
    KVRDMA_RETURN_IF_ERROR(batch_arguments(c, n, keys, keylens, vallens, codes));
    kvrdma::Status bad;
    if (n > 0 && (mems == nullptr || offsets == nullptr || capacities == nullptr)) {
      bad = null_argument("mems, offsets or capacities");
    }
    for (size_t i = 0; bad.is_ok() && i < n; ++i) {
      bad = mem_ok(mems[i], "mems[" + std::to_string(i) + "]");
    }
    if (!bad.is_ok()) {
      std::fill(codes, codes + n, static_cast<int>(bad.code()));
      return bad;
    }
    std::vector<uint64_t> lens(n, 0);
    std::vector<kvrdma::GetIntoItem> items(n);
    for (size_t i = 0; i < n; ++i) {
      items[i] = kvrdma::GetIntoItem{{static_cast<const char*>(keys[i]), keylens[i]},
                                     &mems[i]->handle,
                                     offsets[i],
                                     capacities[i],
                                     &lens[i]};
    }
    auto got = c->client->get_many_into(items);
    std::vector<kvrdma::Status> statuses;
    statuses.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      statuses.push_back(got[i].status());
      vallens[i] = lens[i];
    }
    return batch_outcome(statuses, codes);
  });
}

int kvrdma_put_many_from(kvrdma_client* c, size_t n, const void* const* keys, const size_t* keylens,
                         kvrdma_mem* const* mems, const size_t* offsets, const size_t* lens,
                         uint64_t ttl_ms, int* codes, char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    KVRDMA_RETURN_IF_ERROR(batch_arguments(c, n, keys, keylens, codes, codes));
    kvrdma::Status bad;
    if (n > 0 && (mems == nullptr || offsets == nullptr || lens == nullptr)) {
      bad = null_argument("mems, offsets or lens");
    }
    for (size_t i = 0; bad.is_ok() && i < n; ++i) {
      bad = mem_ok(mems[i], "mems[" + std::to_string(i) + "]");
    }
    if (!bad.is_ok()) {
      std::fill(codes, codes + n, static_cast<int>(bad.code()));
      return bad;
    }
    std::vector<kvrdma::PutFromItem> items(n);
    for (size_t i = 0; i < n; ++i) {
      items[i] = kvrdma::PutFromItem{{static_cast<const char*>(keys[i]), keylens[i]},
                                     &mems[i]->handle,
                                     offsets[i],
                                     lens[i]};
    }
    return batch_outcome(c->client->put_many_from(items, ttl_ms), codes);
  });
}

}  // extern "C"
