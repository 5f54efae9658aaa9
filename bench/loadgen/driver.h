// kvrdma-loadgen: one bench loop, three wire protocols behind this interface. Every driver is used
// by one worker thread. Blocking (put/get): one request at a time, so N workers keep N requests
// in flight on every system. Pipelined (submit_*/complete, --pipeline P): each worker keeps P
// requests outstanding on its own connection, so N workers keep N x P in flight. A Redis or
// memcached driver is one connection; kvrdma drivers share one Client by default (one process, one
// Client, many threads: how the library is meant to be used) or have one Client each
// (--kvrdma-clients per-worker).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvrdma/status.h"

namespace kvrdma::bench {

// What a GET must return: the exact length, and the bytes at a few spot positions. Checking spots
// (not every byte) keeps the check off the critical path while still catching a system that
// answers with the wrong value or a short one.
struct Expect {
  std::string_view value;  // the bytes that were stored
};

// Compares length and spot bytes (first, middle, last 8 bytes); INTERNAL naming the key on
// mismatch.
Status verify(std::string_view key, const Expect& expect, const char* got, size_t got_len);

class Driver {
 public:
  virtual ~Driver() = default;
  virtual Status put(std::string_view key, std::string_view value) = 0;
  virtual Status get(std::string_view key, const Expect& expect) = 0;
  // A batch of GETs issued together (pipelined where the protocol allows; kvrdma: get_many).
  // The default issues them one by one.
  virtual Status get_batch(std::span<const std::string_view> keys,
                           std::span<const Expect> expects) {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (auto s = get(keys[i], expects[i]); !s.is_ok()) return s;
    }
    return Status();
  }

  // Pipelining: submit_get / submit_put start one request without waiting for it; complete()
  // waits for the oldest request not completed yet and checks its answer: a GET against
  // *expect, a PUT (expect == nullptr) for its acknowledgement. Answers complete in submit
  // order; the caller keeps the order of kinds and passes the key for messages. A failed
  // complete() leaves the driver in step: the remaining outstanding requests can still be
  // completed (or fail), so the next case starts clean.
  virtual Status submit_get(std::string_view key) = 0;
  virtual Status submit_put(std::string_view key, std::string_view value) = 0;
  virtual Status complete(std::string_view key, const Expect* expect) = 0;

  // Caller memory (kvrdma only; others answer FAILED_PRECONDITION): before a case, `pattern`
  // (every value of the dataset is a slice of it) is put in memory the driver registered; then
  // put_from publishes the `len` bytes at `offset` of it with no copy, and get_into has the
  // server write a value straight into the driver's own registered block.
  virtual Status prepare_block(std::string_view pattern, uint64_t value_size) {
    (void)pattern;
    (void)value_size;
    return Status(Code::kFailedPrecondition, "this system has no caller-memory API");
  }
  virtual Status put_from(std::string_view key, size_t offset, size_t len) {
    (void)key;
    (void)offset;
    (void)len;
    return Status(Code::kFailedPrecondition, "this system has no caller-memory API");
  }
  virtual Status get_into(std::string_view key, const Expect& expect) {
    (void)key;
    (void)expect;
    return Status(Code::kFailedPrecondition, "this system has no caller-memory API");
  }
};

struct DriverConfig {
  std::string system;  // kvrdma | resp | memcached
  std::string addr;    // host:port
  bool mock = true;    // kvrdma: transport
  std::string provider = "auto";
  uint64_t buffer_bytes = 64ull << 20;  // kvrdma: client receive buffer
  // resp, memcached pipelining: true sends each request as it is submitted; false (faster, see
  // bench/README.md) queues them and sends all queued in one write when a reply must be waited for.
  bool eager_writes = false;
};

// `workers` drivers; with `shared`, all of them on one Client whose receive buffer is `workers`
// times buffer_bytes.
Result<std::vector<std::unique_ptr<Driver>>> make_kvrdma_drivers(const DriverConfig& config,
                                                                 int workers, bool shared);
Result<std::unique_ptr<Driver>> make_resp_driver(const DriverConfig& config);
Result<std::unique_ptr<Driver>> make_memcached_driver(const DriverConfig& config);

}  // namespace kvrdma::bench
