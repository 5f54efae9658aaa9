// libFuzzer target for one request handler of the server (KVRDMA_FUZZ_METHOD, set per target by
// CMake). Input: byte 0 is a flag (bit 0: put a live session id into the request so the handler
// passes the session check), the rest are the serialized request as a client would send it.
// Fails (abort) when a handler hangs or throws; ASan/UBSan catch memory errors and UB.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "service_harness.h"

#ifndef KVRDMA_FUZZ_METHOD
#error "define KVRDMA_FUZZ_METHOD to the name of the handler this target fuzzes"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // One service for the whole run; never destroyed (libFuzzer exits without returning).
  static auto* service = new kvrdma::fuzz::InProcessService(true);
  if (size < 1) return 0;
  std::string request(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    auto msg = service->new_request(KVRDMA_FUZZ_METHOD);
    if (!msg) std::abort();
    if (!msg->ParseFromString(request)) return 0;
    service->use_live_session(*msg);
    request = msg->SerializeAsString();
  }
  grpc::Status s = service->call(KVRDMA_FUZZ_METHOD, request, nullptr);
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
      s.error_code() == grpc::StatusCode::UNKNOWN) {
    std::fprintf(stderr, "%s: handler hung or threw: %d %s\n", KVRDMA_FUZZ_METHOD,
                 static_cast<int>(s.error_code()), s.error_message().c_str());
    std::abort();
  }
  return 0;
}
