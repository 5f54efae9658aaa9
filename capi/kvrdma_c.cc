// The C ABI over kvrdma::Server and kvrdma::Client. Every entry point runs through guard(), which
// maps Status and any exception to a code and a message, so nothing throws across the boundary.
#include "kvrdma/kvrdma.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "capi_internal.h"
#include "kvrdma/client.h"
#include "kvrdma/options.h"
#include "kvrdma/server.h"
#include "kvrdma/stats.h"
#include "kvrdma/version.h"

// The C codes are kvrdma::Code cast to int; pin the numbering so neither side drifts.
static_assert(KVRDMA_NOT_FOUND == static_cast<int>(kvrdma::Code::kNotFound));
static_assert(KVRDMA_INVALID_ARGUMENT == static_cast<int>(kvrdma::Code::kInvalidArgument));
static_assert(KVRDMA_RESOURCE_EXHAUSTED == static_cast<int>(kvrdma::Code::kResourceExhausted));
static_assert(KVRDMA_FAILED_PRECONDITION == static_cast<int>(kvrdma::Code::kFailedPrecondition));
static_assert(KVRDMA_UNAVAILABLE == static_cast<int>(kvrdma::Code::kUnavailable));
static_assert(KVRDMA_DEADLINE_EXCEEDED == static_cast<int>(kvrdma::Code::kDeadlineExceeded));
static_assert(KVRDMA_PERMISSION_DENIED == static_cast<int>(kvrdma::Code::kPermissionDenied));
static_assert(KVRDMA_INTERNAL == static_cast<int>(kvrdma::Code::kInternal));

namespace {

using namespace kvrdma::capi;

template <typename Options>
kvrdma::Status build(const kvrdma_config* config, Options& options, unsigned role) {
  if (config == nullptr) return kvrdma::Status();
  for (const auto& [name, value] : config->settings) {
    for (const auto& s : kvrdma::settings()) {
      if (name == s.name && (s.roles & role)) {
        KVRDMA_RETURN_IF_ERROR(kvrdma::apply_setting(options, name, value));
      }
    }
  }
  return kvrdma::Status();
}

// "name=value" lines, one per figure of the stats table: a text form whose set of names may grow
// without breaking the ABI (a struct could not).
std::string stats_text(const kvrdma::ServerStats& stats) {
  std::string out;
  for (const kvrdma::StatInfo& field : kvrdma::stats_fields()) {
    out += field.name;
    out += '=';
    out += field.text != nullptr ? field.text(stats) : std::to_string(field.number(stats));
    out += '\n';
  }
  return out;
}

// Hands `text` to the caller as a NUL-terminated malloc'd string (freed with kvrdma_free).
void give_text(const std::string& text, char** out, size_t* len) {
  char* copy = static_cast<char*>(std::malloc(text.size() + 1));
  if (copy == nullptr) throw std::bad_alloc();
  std::memcpy(copy, text.c_str(), text.size() + 1);
  *out = copy;
  if (len != nullptr) *len = text.size();
}

}  // namespace

extern "C" {

const char* kvrdma_version(void) { return kvrdma::version(); }

const char* kvrdma_code_name(int code) {
  if (code < KVRDMA_OK || code > KVRDMA_INTERNAL) return "UNKNOWN";
  return kvrdma::code_name(static_cast<kvrdma::Code>(code));
}

kvrdma_config* kvrdma_config_new(void) { return new (std::nothrow) kvrdma_config(); }

int kvrdma_config_set(kvrdma_config* config, const char* name, const char* value, char* errbuf,
                      size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (config == nullptr) return null_argument("config");
    if (name == nullptr) return null_argument("name");
    if (value == nullptr) return null_argument("value");
    // Validate by applying to scratch options of every role the setting has.
    const kvrdma::SettingInfo* info = nullptr;
    for (const auto& setting : kvrdma::settings()) {
      if (std::strcmp(setting.name, name) == 0) info = &setting;
    }
    if (info == nullptr) {
      return kvrdma::Status(kvrdma::Code::kInvalidArgument,
                            std::string("unknown setting '") + name +
                                "'; settings are the kv-server / kv-client flag names");
    }
    if (info->roles & kvrdma::kServerSetting) {
      kvrdma::ServerOptions scratch;
      KVRDMA_RETURN_IF_ERROR(kvrdma::apply_setting(scratch, name, value));
    }
    if (info->roles & kvrdma::kClientSetting) {
      kvrdma::ClientOptions scratch;
      KVRDMA_RETURN_IF_ERROR(kvrdma::apply_setting(scratch, name, value));
    }
    for (auto& kv : config->settings) {
      if (kv.first == name) {
        kv.second = value;
        return kvrdma::Status();
      }
    }
    config->settings.emplace_back(name, value);
    return kvrdma::Status();
  });
}

void kvrdma_config_free(kvrdma_config* config) { delete config; }

int kvrdma_server_start(const kvrdma_config* config, kvrdma_server** out, char* errbuf,
                        size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (out == nullptr) return null_argument("out");
    *out = nullptr;
    kvrdma::ServerOptions options;
    KVRDMA_RETURN_IF_ERROR(build(config, options, kvrdma::kServerSetting));
    auto server = kvrdma::Server::start(options);
    if (!server) return server.status();
    auto handle = std::make_unique<kvrdma_server>();
    handle->address = (*server)->address();
    handle->server = std::move(server).value();
    *out = handle.release();
    return kvrdma::Status();
  });
}

const char* kvrdma_server_address(const kvrdma_server* server) {
  return server ? server->address.c_str() : "";
}

void kvrdma_server_stop(kvrdma_server* server) {
  try {
    delete server;
  } catch (...) {
  }
}

int kvrdma_client_connect(const kvrdma_config* config, kvrdma_client** out, char* errbuf,
                          size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (out == nullptr) return null_argument("out");
    *out = nullptr;
    kvrdma::ClientOptions options;
    KVRDMA_RETURN_IF_ERROR(build(config, options, kvrdma::kClientSetting));
    auto client = kvrdma::Client::connect(options);
    if (!client) return client.status();
    *out = new kvrdma_client{std::move(client).value()};
    return kvrdma::Status();
  });
}

void kvrdma_client_close(kvrdma_client* client) {
  try {
    delete client;
  } catch (...) {
  }
}

int kvrdma_put(kvrdma_client* client, const void* key, size_t keylen, const void* val,
               size_t vallen, uint64_t ttl_ms, char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (client == nullptr) return null_argument("client");
    if (!key_ok(key, keylen)) return null_argument("key");
    if (val == nullptr && vallen != 0) return null_argument("val");
    return client->client->put({static_cast<const char*>(key), keylen},
                               {static_cast<const char*>(val), vallen}, ttl_ms);
  });
}

int kvrdma_get(kvrdma_client* client, const void* key, size_t keylen, void** val, size_t* vallen,
               char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (client == nullptr) return null_argument("client");
    if (!key_ok(key, keylen)) return null_argument("key");
    if (val == nullptr || vallen == nullptr) return null_argument("val or vallen");
    *val = nullptr;
    *vallen = 0;
    auto v = client->client->get({static_cast<const char*>(key), keylen});
    if (!v) return v.status();
    void* copy = std::malloc(v->size() ? v->size() : 1);
    if (copy == nullptr) throw std::bad_alloc();
    std::memcpy(copy, v->data(), v->size());
    *val = copy;
    *vallen = v->size();
    return kvrdma::Status();
  });
}

int kvrdma_get_into(kvrdma_client* client, const void* key, size_t keylen, void* buf, size_t cap,
                    size_t* vallen, char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (client == nullptr) return null_argument("client");
    if (!key_ok(key, keylen)) return null_argument("key");
    if (vallen == nullptr) return null_argument("vallen");
    if (buf == nullptr && cap != 0) return null_argument("buf");
    // Zero copy when buf lies in memory this client registered or allocated.
    uint64_t len = 0;  // also the size needed when buf is too small
    auto n =
        client->client->get_into({static_cast<const char*>(key), keylen},
                                 std::span<std::byte>(static_cast<std::byte*>(buf), cap), &len);
    *vallen = len;
    return n.status();
  });
}

int kvrdma_get_view(kvrdma_client* client, const void* key, size_t keylen, kvrdma_view** out,
                    char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (client == nullptr) return null_argument("client");
    if (!key_ok(key, keylen)) return null_argument("key");
    if (out == nullptr) return null_argument("out");
    *out = nullptr;
    auto v = client->client->get({static_cast<const char*>(key), keylen});
    if (!v) return v.status();
    *out = new kvrdma_view{std::move(v).value()};
    return kvrdma::Status();
  });
}

const void* kvrdma_view_data(const kvrdma_view* view) { return view ? view->view.data() : nullptr; }
size_t kvrdma_view_size(const kvrdma_view* view) { return view ? view->view.size() : 0; }

void kvrdma_view_release(kvrdma_view* view) {
  try {
    delete view;
  } catch (...) {
  }
}

int kvrdma_get_many(kvrdma_client* client, size_t n, const void* const* keys, const size_t* keylens,
                    kvrdma_view** views, int* codes, char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (views != nullptr) std::fill(views, views + n, nullptr);
    KVRDMA_RETURN_IF_ERROR(batch_arguments(client, n, keys, keylens, views, codes));
    std::vector<std::string_view> ks;
    ks.reserve(n);
    for (size_t i = 0; i < n; ++i) ks.emplace_back(static_cast<const char*>(keys[i]), keylens[i]);
    auto got = client->client->get_many(ks);
    std::vector<kvrdma::Status> statuses;
    statuses.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      statuses.push_back(got[i].status());
      if (got[i].is_ok()) views[i] = new kvrdma_view{std::move(got[i]).value()};
    }
    return batch_outcome(statuses, codes);
  });
}

int kvrdma_put_many(kvrdma_client* client, size_t n, const void* const* keys, const size_t* keylens,
                    const void* const* vals, const size_t* vallens, uint64_t ttl_ms, int* codes,
                    char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    KVRDMA_RETURN_IF_ERROR(batch_arguments(client, n, keys, keylens, codes, codes));
    kvrdma::Status bad;
    if (n > 0 && (vals == nullptr || vallens == nullptr)) bad = null_argument("vals or vallens");
    for (size_t i = 0; bad.is_ok() && i < n; ++i) {
      if (vals[i] == nullptr && vallens[i] != 0) {
        bad = null_argument(("vals[" + std::to_string(i) + "]").c_str());
      }
    }
    if (!bad.is_ok()) {
      std::fill(codes, codes + n, static_cast<int>(bad.code()));
      return bad;
    }
    std::vector<kvrdma::KeyValue> items;
    items.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      items.push_back({{static_cast<const char*>(keys[i]), keylens[i]},
                       {static_cast<const char*>(vals[i]), vallens[i]}});
    }
    return batch_outcome(client->client->put_many(items, ttl_ms), codes);
  });
}

int kvrdma_delete(kvrdma_client* client, const void* key, size_t keylen, char* errbuf,
                  size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (client == nullptr) return null_argument("client");
    if (!key_ok(key, keylen)) return null_argument("key");
    return client->client->del({static_cast<const char*>(key), keylen});
  });
}

int kvrdma_client_stats(kvrdma_client* client, char** text, size_t* len, char* errbuf,
                        size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (client == nullptr) return null_argument("client");
    if (text == nullptr) return null_argument("text");
    *text = nullptr;
    if (len != nullptr) *len = 0;
    auto stats = client->client->stats();
    if (!stats) return stats.status();
    give_text(stats_text(*stats), text, len);
    return kvrdma::Status();
  });
}

int kvrdma_client_stats_after(kvrdma_client* client, uint64_t version, uint32_t max_wait_ms,
                              char** text, size_t* len, char* errbuf, size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (client == nullptr) return null_argument("client");
    if (text == nullptr) return null_argument("text");
    *text = nullptr;
    if (len != nullptr) *len = 0;
    auto stats = client->client->stats_after(version, std::chrono::milliseconds(max_wait_ms));
    if (!stats) return stats.status();
    give_text(stats_text(*stats), text, len);
    return kvrdma::Status();
  });
}

int kvrdma_server_stats(const kvrdma_server* server, char** text, size_t* len, char* errbuf,
                        size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (server == nullptr) return null_argument("server");
    if (text == nullptr) return null_argument("text");
    *text = nullptr;
    if (len != nullptr) *len = 0;
    give_text(stats_text(server->server->stats()), text, len);
    return kvrdma::Status();
  });
}

int kvrdma_server_metrics(const kvrdma_server* server, char** text, size_t* len, char* errbuf,
                          size_t errlen) {
  return guard(errbuf, errlen, [&]() -> kvrdma::Status {
    if (server == nullptr) return null_argument("server");
    if (text == nullptr) return null_argument("text");
    *text = nullptr;
    if (len != nullptr) *len = 0;
    give_text(server->server->metrics_text(), text, len);
    return kvrdma::Status();
  });
}

void kvrdma_free(void* ptr) { std::free(ptr); }

}  // extern "C"
