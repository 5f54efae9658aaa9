// Connecting the C++ client to the kv-server processes of an integration test: the options every
// suite starts from and a connect that fails the test with the reason. Header-only, for suites
// that link kvrdma_core; connect_client uses Catch2, so it belongs to the test's main thread.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "integration/harness.h"
#include "kvrdma/client.h"

namespace kvrdma::testing {

// Options for a client of `address` over the test's transport (apply_test_transport) with
// `buffer_bytes` of receive buffer and a 20 s deadline a call: generous, as a loaded CI machine
// may stall a call for seconds.
inline ClientOptions test_client_options(const std::string& address,
                                         uint64_t buffer_bytes = 64ull << 20) {
  ClientOptions o;
  o.server_addr = address;
  o.buffer_bytes = buffer_bytes;
  o.timeout_ms = 20000;
  apply_test_transport(o.transport);
  return o;
}

// Client::connect(options); fails the current test, saying why, when it cannot connect.
inline std::unique_ptr<Client> connect_client(const ClientOptions& options) {
  auto c = Client::connect(options);
  INFO("connecting to " << options.server_addr << ": " << c.status().to_string());
  REQUIRE(c.is_ok());
  return std::move(c).value();
}

}  // namespace kvrdma::testing
