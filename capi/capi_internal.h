// What the C ABI's translation units share (kvrdma_c.cc, kvrdma_mem_c.cc): the handle structs and
// the one guard that maps Status and exceptions to a code and a message. Not installed.
#pragma once

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "kvrdma/client.h"
#include "kvrdma/kvrdma.h"
#include "kvrdma/server.h"

struct kvrdma_config {
  std::vector<std::pair<std::string, std::string>> settings;  // in the order they were set
};
struct kvrdma_server {
  std::unique_ptr<kvrdma::Server> server;
  std::string address;
};
struct kvrdma_client {
  std::unique_ptr<kvrdma::Client> client;
};
struct kvrdma_view {
  kvrdma::ValueView view;
};
struct kvrdma_mem {
  kvrdma::MemoryHandle handle;
};

namespace kvrdma::capi {

inline void set_error(char* errbuf, size_t errlen, const std::string& message) {
  if (errbuf == nullptr || errlen == 0) return;
  size_t n = std::min(message.size(), errlen - 1);
  std::memcpy(errbuf, message.data(), n);
  errbuf[n] = '\0';
}

inline int report(const kvrdma::Status& s, char* errbuf, size_t errlen) {
  set_error(errbuf, errlen, s.is_ok() ? std::string() : s.to_string());
  return static_cast<int>(s.code());
}

// Runs `fn` (returning kvrdma::Status) and maps everything it can throw to a code.
template <typename Fn>
int guard(char* errbuf, size_t errlen, Fn&& fn) noexcept {
  try {
    return report(fn(), errbuf, errlen);
  } catch (const std::bad_alloc&) {
    set_error(errbuf, errlen, "RESOURCE_EXHAUSTED: out of memory");
    return KVRDMA_RESOURCE_EXHAUSTED;
  } catch (const std::exception& e) {
    set_error(errbuf, errlen, std::string("INTERNAL: ") + e.what());
    return KVRDMA_INTERNAL;
  } catch (...) {
    set_error(errbuf, errlen, "INTERNAL: unknown exception");
    return KVRDMA_INTERNAL;
  }
}

inline kvrdma::Status null_argument(const char* what) {
  return kvrdma::Status(kvrdma::Code::kInvalidArgument, std::string(what) + " is NULL");
}

inline bool key_ok(const void* key, size_t keylen) { return key != nullptr || keylen == 0; }

// The first failure of a batch, as the call's result; every item's code into codes[].
inline kvrdma::Status batch_outcome(const std::vector<kvrdma::Status>& items, int* codes) {
  kvrdma::Status first;
  for (size_t i = 0; i < items.size(); ++i) {
    codes[i] = static_cast<int>(items[i].code());
    if (first.is_ok() && !items[i].is_ok()) {
      first = items[i].with_context("item " + std::to_string(i));
    }
  }
  return first;
}

// Checks the arrays of a batch; on failure every code (when codes is given) is the failure's.
inline kvrdma::Status batch_arguments(kvrdma_client* client, size_t n, const void* const* keys,
                                      const size_t* keylens, const void* out, int* codes) {
  kvrdma::Status s;
  if (client == nullptr) s = null_argument("client");
  else if (n > 0 && (keys == nullptr || keylens == nullptr)) s = null_argument("keys or keylens");
  else if (n > 0 && (out == nullptr || codes == nullptr))
    s = null_argument("output array or codes");
  for (size_t i = 0; s.is_ok() && i < n; ++i) {
    if (!key_ok(keys[i], keylens[i]))
      s = null_argument(("keys[" + std::to_string(i) + "]").c_str());
  }
  if (!s.is_ok() && codes != nullptr) std::fill(codes, codes + n, static_cast<int>(s.code()));
  return s;
}

}  // namespace kvrdma::capi
