// The three drivers: kvrdma (the public Client), RESP2 (Redis) and the memcached text protocol,
// the last two written here so Redis and memcached are driven by the same loop as kvrdma.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <deque>
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
  // A ring of Pending: get_async / put_async, waited for oldest first.
  Status submit_get(std::string_view key) override {
    window_.push_back(client_->get_async(key));
    return Status();
  }
  Status submit_put(std::string_view key, std::string_view value) override {
    window_.push_back(client_->put_async(key, value));
    return Status();
  }
  Status complete(std::string_view key, const Expect* expect) override {
    if (window_.empty())
      return Status(Code::kFailedPrecondition, "complete() with nothing submitted");
    Pending oldest = std::move(window_.front());
    window_.pop_front();
    auto r = oldest.wait();
    if (!r) return r.status().with_context(fmt::format("{} '{}'", expect ? "GET" : "PUT", key));
    if (!expect) return Status();
    return verify(key, *expect, r->data(), r->size());
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
  MemoryHandle dest_;           // this worker's GET destination
  std::deque<Pending> window_;  // submitted, not completed yet, oldest first
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

// A request written now (blocking calls, --socket-writes eager) or queued for the next write.
Status write_request(SocketConn& conn, std::span<const std::string_view> pieces, bool now) {
  if (now) return conn.send(pieces);
  conn.queue(pieces);
  return Status();
}

// Redis over RESP2: SET / GET, pipelined by writing several requests before reading replies.
class RespDriver final : public Driver {
 public:
  RespDriver(SocketConn c, bool eager) : conn_(std::move(c)), eager_(eager) {}

  Status put(std::string_view key, std::string_view value) override {
    KVRDMA_RETURN_IF_ERROR(write_set(key, value, true));
    return read_set_reply(key);
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
      KVRDMA_RETURN_IF_ERROR(read_get_reply(keys[i], expects[i]));
    }
    return Status();
  }

  Status submit_get(std::string_view key) override {
    char kb[24];
    std::string_view pieces[] = {"*2\r\n$3\r\nGET\r\n$", decimal(key.size(), kb), "\r\n", key,
                                 "\r\n"};
    return write_request(conn_, pieces, eager_);
  }
  Status submit_put(std::string_view key, std::string_view value) override {
    return write_set(key, value, eager_);
  }
  Status complete(std::string_view key, const Expect* expect) override {
    return expect ? read_get_reply(key, *expect) : read_set_reply(key);
  }

 private:
  Status write_set(std::string_view key, std::string_view value, bool now) {
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
    return write_request(conn_, pieces, now);
  }

  Status read_set_reply(std::string_view key) {
    auto line = conn_.read_line();
    if (!line) return line.status();
    if (*line != "+OK") return Status(Code::kInternal, fmt::format("SET '{}': {}", key, *line));
    return Status();
  }

  // One bulk reply, read whole before it is checked (so a wrong one leaves the stream in step).
  Status read_get_reply(std::string_view key, const Expect& expect) {
    auto line = conn_.read_line();
    if (!line) return line.status();
    if (line->empty() || (*line)[0] != '$') {
      return Status(Code::kInternal, fmt::format("GET '{}': {}", key, *line));
    }
    auto len = parse_int(line->substr(1), "bulk length");
    if (!len) return len.status();
    if (*len < 0) return Status(Code::kNotFound, fmt::format("GET '{}': nil", key));
    KVRDMA_RETURN_IF_ERROR(conn_.read_exact(static_cast<size_t>(*len) + 2, value_));
    return verify(key, expect, value_.data(), value_.size() - 2);
  }

  SocketConn conn_;
  bool eager_;         // pipelined requests: written at submit, not queued
  std::string value_;  // reused, so a GET allocates only when values grow
};

// memcached's text protocol: set / get, pipelined the same way.
class MemcachedDriver final : public Driver {
 public:
  MemcachedDriver(SocketConn c, bool eager) : conn_(std::move(c)), eager_(eager) {}

  Status put(std::string_view key, std::string_view value) override {
    KVRDMA_RETURN_IF_ERROR(write_set(key, value, true));
    return read_set_reply(key);
  }

  Status get(std::string_view key, const Expect& expect) override {
    std::string_view pieces[] = {"get ", key, "\r\n"};
    KVRDMA_RETURN_IF_ERROR(conn_.send(pieces));
    return read_get_reply(key, expect);
  }

  Status submit_get(std::string_view key) override {
    std::string_view pieces[] = {"get ", key, "\r\n"};
    return write_request(conn_, pieces, eager_);
  }
  Status submit_put(std::string_view key, std::string_view value) override {
    return write_set(key, value, eager_);
  }
  Status complete(std::string_view key, const Expect* expect) override {
    return expect ? read_get_reply(key, *expect) : read_set_reply(key);
  }

 private:
  Status write_set(std::string_view key, std::string_view value, bool now) {
    char vb[24];
    std::string_view pieces[] = {"set ", key,   " 0 0 ", decimal(value.size(), vb),
                                 "\r\n", value, "\r\n"};
    return write_request(conn_, pieces, now);
  }

  Status read_set_reply(std::string_view key) {
    auto line = conn_.read_line();
    if (!line) return line.status();
    if (*line != "STORED") return Status(Code::kInternal, fmt::format("set '{}': {}", key, *line));
    return Status();
  }

  // VALUE <key> <flags> <bytes>, the bytes, END: read whole before the value is checked.
  Status read_get_reply(std::string_view key, const Expect& expect) {
    auto line = conn_.read_line();
    if (!line) return line.status();
    if (*line == "END") return Status(Code::kNotFound, fmt::format("get '{}': miss", key));
    auto sp = line->rfind(' ');
    if (!line->starts_with("VALUE ") || sp == std::string_view::npos) {
      return Status(Code::kInternal, fmt::format("get '{}': {}", key, *line));
    }
    auto len = parse_int(line->substr(sp + 1), "value length");
    if (!len) return len.status();
    KVRDMA_RETURN_IF_ERROR(conn_.read_exact(static_cast<size_t>(*len) + 2, value_));
    auto end = conn_.read_line();
    if (!end) return end.status();
    if (*end != "END") return Status(Code::kInternal, fmt::format("get '{}': {}", key, *end));
    return verify(key, expect, value_.data(), value_.size() - 2);
  }

  SocketConn conn_;
  bool eager_;  // pipelined requests: written at submit, not queued
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
  return std::unique_ptr<Driver>(new RespDriver(std::move(c).value(), config.eager_writes));
}

Result<std::unique_ptr<Driver>> make_memcached_driver(const DriverConfig& config) {
  auto c = SocketConn::connect(config.addr);
  if (!c) return c.status();
  return std::unique_ptr<Driver>(new MemcachedDriver(std::move(c).value(), config.eager_writes));
}

}  // namespace kvrdma::bench
