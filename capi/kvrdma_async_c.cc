// The C ABI of pipelined requests (README.md "Pipelined requests"): kvrdma_pending over
// kvrdma::Pending, the single submits, and kvrdma_batch over kvrdma::Client::Batch. Every entry
// point runs through the one guard.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "capi_internal.h"

struct kvrdma_pending {
  kvrdma::Pending pending;
};
struct kvrdma_batch {
  kvrdma::Client::Batch batch;
};

using namespace kvrdma::capi;

extern "C" {

int kvrdma_get_submit(kvrdma_client* client, const void* key, size_t keylen, kvrdma_pending** out,
                      char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (client == nullptr) return null_argument("client");
    if (!key_ok(key, keylen)) return null_argument("key");
    if (out == nullptr) return null_argument("out");
    *out = nullptr;
    auto p = std::make_unique<kvrdma_pending>();
    p->pending = client->client->get_async({static_cast<const char*>(key), keylen});
    *out = p.release();
    return kvrdma::Status();
  });
}

int kvrdma_put_submit(kvrdma_client* client, const void* key, size_t keylen, const void* val,
                      size_t vallen, uint64_t ttl_ms, kvrdma_pending** out, char* errbuf,
                      size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (client == nullptr) return null_argument("client");
    if (!key_ok(key, keylen)) return null_argument("key");
    if (val == nullptr && vallen != 0) return null_argument("val");
    if (out == nullptr) return null_argument("out");
    *out = nullptr;
    auto p = std::make_unique<kvrdma_pending>();
    p->pending = client->client->put_async({static_cast<const char*>(key), keylen},
                                           {static_cast<const char*>(val), vallen}, ttl_ms);
    *out = p.release();
    return kvrdma::Status();
  });
}

int kvrdma_pending_poll(kvrdma_pending* pending, int* done, char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (pending == nullptr) return null_argument("pending");
    if (done == nullptr) return null_argument("done");
    *done = pending->pending.ready() ? 1 : 0;
    return kvrdma::Status();
  });
}

int kvrdma_pending_wait(kvrdma_pending* pending, void** val, size_t* vallen, char* errbuf,
                        size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (pending == nullptr) return null_argument("pending");
    if (val != nullptr) *val = nullptr;
    if (vallen != nullptr) *vallen = 0;
    auto r = pending->pending.wait();
    if (!r) return r.status();
    if (val != nullptr) {
      void* copy = std::malloc(r->size() ? r->size() : 1);
      if (copy == nullptr) throw std::bad_alloc();
      std::memcpy(copy, r->data(), r->size());
      *val = copy;
    }
    if (vallen != nullptr) *vallen = r->size();
    return kvrdma::Status();
  });
}

void kvrdma_pending_free(kvrdma_pending* pending) { delete pending; }

int kvrdma_batch_new(kvrdma_client* client, kvrdma_batch** out, char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (out == nullptr) return null_argument("out");
    *out = nullptr;
    if (client == nullptr) return null_argument("client");
    *out = new kvrdma_batch{client->client->batch()};
    return kvrdma::Status();
  });
}

int kvrdma_batch_add_get(kvrdma_batch* batch, const void* key, size_t keylen, char* errbuf,
                         size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (batch == nullptr) return null_argument("batch");
    if (!key_ok(key, keylen)) return null_argument("key");
    batch->batch.get({static_cast<const char*>(key), keylen});
    return kvrdma::Status();
  });
}

int kvrdma_batch_add_put(kvrdma_batch* batch, const void* key, size_t keylen, const void* val,
                         size_t vallen, uint64_t ttl_ms, char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (batch == nullptr) return null_argument("batch");
    if (!key_ok(key, keylen)) return null_argument("key");
    if (val == nullptr && vallen != 0) return null_argument("val");
    batch->batch.put({static_cast<const char*>(key), keylen},
                     {static_cast<const char*>(val), vallen}, ttl_ms);
    return kvrdma::Status();
  });
}

size_t kvrdma_batch_size(const kvrdma_batch* batch) {
  return batch == nullptr ? 0 : batch->batch.size();
}

int kvrdma_batch_submit(kvrdma_batch* batch, kvrdma_pending** pendings, size_t cap, char* errbuf,
                        size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (batch == nullptr) return null_argument("batch");
    const size_t n = batch->batch.size();
    if (n > 0 && pendings == nullptr) return null_argument("pendings");
    if (cap < n) {
      return kvrdma::Status(kvrdma::Code::kInvalidArgument,
                            "pendings has room for " + std::to_string(cap) + " handles but the " +
                                "batch holds " + std::to_string(n) +
                                " requests; pass kvrdma_batch_size(batch) entries");
    }
    // Every handle first, so nothing is sent unless all of them can be given back.
    std::vector<std::unique_ptr<kvrdma_pending>> handles(n);
    for (auto& h : handles) h = std::make_unique<kvrdma_pending>();
    std::vector<kvrdma::Pending> sent = batch->batch.submit();
    for (size_t i = 0; i < n; ++i) {
      handles[i]->pending = std::move(sent[i]);
      pendings[i] = handles[i].release();
    }
    return kvrdma::Status();
  });
}

void kvrdma_batch_free(kvrdma_batch* batch) { delete batch; }

}  // extern "C"
