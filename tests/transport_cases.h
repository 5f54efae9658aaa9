// Helpers shared by the transport tests: the transports to run against, a connected
// server/client pair of one kind, fill patterns and a fixed deadline.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvrdma/options.h"
#include "transport/transport.h"

namespace kvrdma::transport::testing {

inline constexpr size_t kPage = 4096;

// Long enough for a loaded 2-core machine; a write that takes this long is a failure anyway.
inline Transport::Clock::time_point deadline() {
  return Transport::Clock::now() + std::chrono::seconds(30);
}

struct TransportCase {
  std::string name;
  TransportOptions options;
};

// The mock always; libfabric shm and tcp, which the test skips when make_transport fails.
inline std::vector<TransportCase> transport_cases() {
  TransportOptions mock;
  mock.mock = true;
  TransportOptions shm;
  shm.mock = false;
  shm.provider = "shm";
  TransportOptions tcp;
  tcp.mock = false;
  tcp.provider = "tcp";
  return {{"mock", mock}, {"fabric shm", shm}, {"fabric tcp", tcp}};
}

// Two instances of one transport in this process, as a server and a client would hold them,
// each connected to the other's address.
struct TransportPair {
  std::unique_ptr<Transport> server;
  std::unique_ptr<Transport> client;
  std::shared_ptr<Peer> client_to_server;  // the client's view of the server
  std::shared_ptr<Peer> server_to_client;
};

// Fails when either instance cannot be made; connecting is part of the contract, so the
// caller REQUIREs those statuses.
inline Result<TransportPair> make_transport_pair(const TransportOptions& options) {
  TransportPair p;
  auto server = make_transport(options);
  if (!server) return server.status();
  auto client = make_transport(options);
  if (!client) return client.status();
  p.server = std::move(*server);
  p.client = std::move(*client);
  return p;
}

// Byte i of a pattern that differs per seed and does not repeat with a power-of-two period.
inline std::byte pattern_byte(size_t i, unsigned seed) {
  return static_cast<std::byte>((i * 131 + seed * 7 + i / 251) % 253);
}

inline void fill_pattern(std::byte* p, size_t len, unsigned seed) {
  for (size_t i = 0; i < len; ++i) p[i] = pattern_byte(i, seed);
}

// Index of the first byte that differs from the pattern, or len when all match.
inline size_t first_pattern_mismatch(const std::byte* p, size_t len, unsigned seed) {
  for (size_t i = 0; i < len; ++i) {
    if (p[i] != pattern_byte(i, seed)) return i;
  }
  return len;
}

// Index of the first byte that is not `value`, or len.
inline size_t first_not(const std::byte* p, size_t len, std::byte value) {
  for (size_t i = 0; i < len; ++i) {
    if (p[i] != value) return i;
  }
  return len;
}

}  // namespace kvrdma::transport::testing
