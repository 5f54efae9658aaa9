// kvrdma-loadgen: one bench loop, three wire protocols behind this interface. Every driver is one
// connection used by one worker thread, so the loop measures the same thing for every system.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "kvrdma/status.h"

namespace kvrdma::bench {

// What a GET must return: the exact length, and the bytes at a few spot positions. Checking spots
// (not every byte) keeps the check off the critical path while still catching a system that
// answers with the wrong value or a short one.
struct Expect {
  std::string_view value;  // the bytes that were stored
};

// Compares length and spot bytes (first, middle, last 8 bytes); INTERNAL naming the key on mismatch.
Status verify(std::string_view key, const Expect& expect, const char* got, size_t got_len);

class Driver {
 public:
  virtual ~Driver() = default;
  virtual Status put(std::string_view key, std::string_view value) = 0;
  virtual Status get(std::string_view key, const Expect& expect) = 0;
  // A batch of GETs issued together (pipelined where the protocol allows). The default issues
  // them one by one. Hook: the kvrdma driver switches to Client::get_many once it exists.
  virtual Status get_batch(std::span<const std::string_view> keys,
                           std::span<const Expect> expects) {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (auto s = get(keys[i], expects[i]); !s.is_ok()) return s;
    }
    return Status();
  }
};

struct DriverConfig {
  std::string system;      // kvrdma | resp | memcached
  std::string addr;        // host:port
  bool mock = true;        // kvrdma: transport
  std::string provider = "auto";
  uint64_t buffer_bytes = 64ull << 20;  // kvrdma: client receive buffer
};

Result<std::unique_ptr<Driver>> make_kvrdma_driver(const DriverConfig& config);
Result<std::unique_ptr<Driver>> make_resp_driver(const DriverConfig& config);
Result<std::unique_ptr<Driver>> make_memcached_driver(const DriverConfig& config);

}  // namespace kvrdma::bench
