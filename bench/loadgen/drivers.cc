// The three drivers: kvrdma (the public Client), RESP2 (Redis) and the memcached text protocol,
// the last two written here so Redis and memcached are driven by the same loop as kvrdma.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "driver.h"
#include "kvrdma/client.h"
#include "socket_conn.h"

namespace kvrdma::bench {

Status verify(std::string_view key, const Expect& expect, const char* got, size_t got_len) {
  const std::string_view want = expect.value;
  if (got_len != want.size()) {
    return Status(Code::kInternal, fmt::format("GET '{}' returned {} bytes, {} were stored", key,
                                               got_len, want.size()));
  }
  const size_t n = want.size(), spot = std::min<size_t>(8, n);
  for (size_t at : {size_t{0}, n / 2 > spot ? n / 2 - spot : 0, n - spot}) {
    if (std::memcmp(got + at, want.data() + at, spot) != 0) {
      return Status(Code::kInternal,
                    fmt::format("GET '{}' returned wrong bytes at offset {}", key, at));
    }
  }
  return Status();
}

namespace {

// The dataset's pattern in registered memory, shared by the workers of one Client (read only
// while a case runs): the source of put_from.
struct SourceBlock {
  std::mutex mu;
  MemoryHandle block;      // guarded by mu while prepared; read only during a case
  std::string_view holds;  // the pattern it holds
};

// One worker's handle on a kvrdma Client; several workers may share one Client (it is
// thread-safe and keeps many requests in flight), which is how an application uses it.
class KvrdmaDriver final : public Driver {
 public:
  KvrdmaDriver(std::shared_ptr<Client> c, std::shared_ptr<SourceBlock> source)
      : client_(std::move(c)), source_(std::move(source)) {}

  // Not timed: allocates (Client::allocate works on every transport) and fills once per size.
  Status prepare_block(std::string_view pattern, uint64_t value_size) override {
    {
      std::lock_guard lock(source_->mu);
      if (source_->holds.data() != pattern.data() || source_->holds.size() != pattern.size()) {
        if (source_->block.size() < pattern.size()) {
          source_->block.release();
          auto b = client_->allocate(pattern.size());
          if (!b) return b.status();
          source_->block = std::move(*b);
        }
        std::memcpy(source_->block.data(), pattern.data(), pattern.size());
        source_->holds = pattern;
      }
    }
    if (dest_.size() < value_size) {
      dest_.release();
      auto b = client_->allocate(std::max<uint64_t>(value_size, 1));
      if (!b) return b.status();
      dest_ = std::move(*b);
      std::memset(dest_.data(), 0, dest_.size());  // touched now, not in the timed window
    }
    return Status();
  }
  Status put_from(std::string_view key, size_t offset, size_t len) override {
    return client_->put_from(key, source_->block, offset, len);
  }
  Status get_into(std::string_view key, const Expect& expect) override {
    auto n = client_->get_into(key, dest_, 0, dest_.size());
    if (!n) return n.status();
    return verify(key, expect, reinterpret_cast<const char*>(dest_.data()), *n);
  }
  Status put(std::string_view key, std::string_view value) override {
    return client_->put(key, value);
  }
  Status get(std::string_view key, const Expect& expect) override {
    auto v = client_->get(key);
    if (!v) return v.status();
    return verify(key, expect, reinterpret_cast<const char*>(v->data()), v->size());
  }
  // One get_many call: one RPC, the large values written into the receive buffer in one pass.
  Status get_batch(std::span<const std::string_view> keys,
                   std::span<const Expect> expects) override {
    auto views = client_->get_many(keys);
    for (size_t i = 0; i < views.size(); ++i) {
      if (!views[i]) return views[i].status().with_context(fmt::format("GET '{}'", keys[i]));
      const ValueView& v = *views[i];
      if (auto s = verify(keys[i], expects[i], reinterpret_cast<const char*>(v.data()), v.size());
          !s.is_ok()) {
        return s;
      }
    }
    return Status();
  }

 private:
  std::shared_ptr<Client> client_;
  std::shared_ptr<SourceBlock> source_;
  MemoryHandle dest_;  // this worker's GET destination
};

// Small decimal formatting without allocation.
std::string_view decimal(uint64_t v, char (&buf)[24]) {
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return {buf, static_cast<size_t>(r.ptr - buf)};
}

Result<int64_t> parse_int(std::string_view s, std::string_view what) {
  int64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
    return Status(Code::kInternal, fmt::format("bad {} in reply: '{}'", what, s));
  }
  return v;
}

class RespDriver final : public Driver {
 public:
  explicit RespDriver(SocketConn c) : conn_(std::move(c)) {}

  Status put(std::string_view key, std::string_view value) override {
    char kb[24], vb[24];
    std::string_view pieces[] = {"*3\r\n$3\r\nSET\r\n$",
                                 decimal(key.size(), kb),
                                 "\r\n",
                                 key,
                                 "\r\n$",
                                 decimal(value.size(), vb),
                                 "\r\n",
                                 value,
                                 "\r\n"};
    KVRDMA_RETURN_IF_ERROR(conn_.send(pieces));
    auto line = conn_.read_line();
    if (!line) return line.status();
    if (*line != "+OK") return Status(Code::kInternal, fmt::format("SET '{}': {}", key, *line));
    return Status();
  }

  Status get(std::string_view key, const Expect& expect) override {
    std::string_view k[] = {key};
    Expect e[] = {expect};
    return get_batch(k, e);
  }

  // Pipelined: every GET goes out in one write, then the replies are read in order.
  Status get_batch(std::span<const std::string_view> keys,
                   std::span<const Expect> expects) override {
    std::vector<std::string_view> pieces;
    std::vector<std::array<char, 24>> lens(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      auto r = std::to_chars(lens[i].data(), lens[i].data() + 24, keys[i].size());
      pieces.insert(pieces.end(), {"*2\r\n$3\r\nGET\r\n$",
                                   std::string_view(lens[i].data(), r.ptr - lens[i].data()), "\r\n",
                                   keys[i], "\r\n"});
    }
    KVRDMA_RETURN_IF_ERROR(conn_.send(pieces));
    for (size_t i = 0; i < keys.size(); ++i) {
      auto line = conn_.read_line();
      if (!line) return line.status();
      if (line->empty() || (*line)[0] != '$') {
        return Status(Code::kInternal, fmt::format("GET '{}': {}", keys[i], *line));
      }
      auto len = parse_int(line->substr(1), "bulk length");
      if (!len) return len.status();
      if (*len < 0) return Status(Code::kNotFound, fmt::format("GET '{}': nil", keys[i]));
      KVRDMA_RETURN_IF_ERROR(conn_.read_exact(static_cast<size_t>(*len) + 2, value_));
      KVRDMA_RETURN_IF_ERROR(verify(keys[i], expects[i], value_.data(), value_.size() - 2));
    }
    return Status();
  }

 private:
  SocketConn conn_;
  std::string value_;  // reused, so a GET allocates only when values grow
};

class MemcachedDriver final : public Driver {
 public:
  explicit MemcachedDriver(SocketConn c) : conn_(std::move(c)) {}

  Status put(std::string_view key, std::string_view value) override {
    char vb[24];
    std::string_view pieces[] = {"set ", key,   " 0 0 ", decimal(value.size(), vb),
                                 "\r\n", value, "\r\n"};
    KVRDMA_RETURN_IF_ERROR(conn_.send(pieces));
    auto line = conn_.read_line();
    if (!line) return line.status();
    if (*line != "STORED") return Status(Code::kInternal, fmt::format("set '{}': {}", key, *line));
    return Status();
  }

  Status get(std::string_view key, const Expect& expect) override {
    std::string_view pieces[] = {"get ", key, "\r\n"};
    KVRDMA_RETURN_IF_ERROR(conn_.send(pieces));
    auto line = conn_.read_line();
    if (!line) return line.status();
    if (*line == "END") return Status(Code::kNotFound, fmt::format("get '{}': miss", key));
    // VALUE <key> <flags> <bytes>
    auto sp = line->rfind(' ');
    if (!line->starts_with("VALUE ") || sp == std::string_view::npos) {
      return Status(Code::kInternal, fmt::format("get '{}': {}", key, *line));
    }
    auto len = parse_int(line->substr(sp + 1), "value length");
    if (!len) return len.status();
    KVRDMA_RETURN_IF_ERROR(conn_.read_exact(static_cast<size_t>(*len) + 2, value_));
    KVRDMA_RETURN_IF_ERROR(verify(key, expect, value_.data(), value_.size() - 2));
    auto end = conn_.read_line();
    if (!end) return end.status();
    if (*end != "END") return Status(Code::kInternal, fmt::format("get '{}': {}", key, *end));
    return Status();
  }

 private:
  SocketConn conn_;
  std::string value_;
};

}  // namespace

Result<std::vector<std::unique_ptr<Driver>>> make_kvrdma_drivers(const DriverConfig& config,
                                                                 int workers, bool shared) {
  ClientOptions o;
  o.server_addr = config.addr;
  o.transport.mock = config.mock;
  o.transport.provider = config.provider;
  // Shared: room for every worker's value at once, which is what `workers` in flight need.
  o.buffer_bytes = shared ? std::max<uint64_t>(64ull << 20, config.buffer_bytes / 2 * workers)
                          : config.buffer_bytes;
  o.timeout_ms = 30000;
  std::vector<std::unique_ptr<Driver>> drivers;
  std::shared_ptr<Client> client;
  std::shared_ptr<SourceBlock> source;
  for (int w = 0; w < workers; ++w) {
    if (!client || !shared) {
      auto c = Client::connect(o);
      if (!c) return c.status();
      client = std::shared_ptr<Client>(std::move(c).value());
      source = std::make_shared<SourceBlock>();
    }
    drivers.push_back(std::make_unique<KvrdmaDriver>(client, source));
  }
  return drivers;
}

Result<std::unique_ptr<Driver>> make_resp_driver(const DriverConfig& config) {
  auto c = SocketConn::connect(config.addr);
  if (!c) return c.status();
  return std::unique_ptr<Driver>(new RespDriver(std::move(c).value()));
}

Result<std::unique_ptr<Driver>> make_memcached_driver(const DriverConfig& config) {
  auto c = SocketConn::connect(config.addr);
  if (!c) return c.status();
  return std::unique_ptr<Driver>(new MemcachedDriver(std::move(c).value()));
}

}  // namespace kvrdma::bench
