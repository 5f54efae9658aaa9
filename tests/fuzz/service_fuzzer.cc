// libFuzzer target for the request handlers of the server. One binary, reached under one name
// per handler (fuzz_<Handler>, symlinks made by CMake): the name picks the handler, so each is
// fuzzed, and its corpus kept, on its own. Input: byte 0 is a flag (bit 0: put a live session id
// into the request so the handler passes the session check), the rest are the serialized request
// as a client would send it. Fails (abort) when a handler hangs or throws; ASan/UBSan catch
// memory errors and undefined behaviour.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "service_harness.h"

namespace {

std::string g_method;  // the handler this run fuzzes

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  std::string self = (*argc > 0) ? (*argv)[0] : "";
  std::string name = self.substr(self.rfind('/') + 1);
  const std::string prefix = "fuzz_";
  if (name.rfind(prefix, 0) == 0) g_method = name.substr(prefix.size());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // One service for the whole run; never destroyed (libFuzzer exits without returning).
  static auto* service = [] {
    auto* s = new kvrdma::fuzz::InProcessService(true);
    if (!s->new_request(g_method)) {
      std::fprintf(stderr, "run this fuzzer as fuzz_<Handler>, one of:");
      for (const auto& m : s->methods()) std::fprintf(stderr, " fuzz_%s", m.c_str());
      std::fprintf(stderr, " (got '%s')\n", g_method.c_str());
      std::exit(2);
    }
    return s;
  }();
  if (size < 1) return 0;
  std::string request(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    auto msg = service->new_request(g_method);
    if (!msg->ParseFromString(request)) return 0;
    service->use_live_session(*msg);
    request = msg->SerializeAsString();
  }
  grpc::Status s = service->call(g_method, request, nullptr);
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
      s.error_code() == grpc::StatusCode::UNKNOWN) {
    std::fprintf(stderr, "%s: handler hung or threw: %d %s\n", g_method.c_str(),
                 static_cast<int>(s.error_code()), s.error_message().c_str());
    std::abort();
  }
  return 0;
}
