// `kv-server doctor` and `kv-client doctor`: checks a host before anyone blames the cache. Each
// check looks at one thing with the options the program would run with (memlock limit, memory,
// /dev/shm, libfabric providers, the chosen transport, a loopback write through it, the gRPC
// port or the server, TLS files) and says ok, warn or fail; every warn and fail says how to fix
// it. Nothing here changes the host: the loopback write uses a few MiB of the transport's own
// memory and gives it back. Not thread-safe (run from the program's main thread).
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvrdma/options.h"

namespace kvrdma::tools {

enum class Verdict { kOk, kWarn, kFail };

// One check's outcome. `fix` is empty exactly when `verdict` is kOk.
struct Check {
  std::string name;  // short, stable: "memlock", "loopback-write", ...
  Verdict verdict = Verdict::kOk;
  std::string detail;  // what was found, with the values involved
  std::string fix;     // what to do about it
};

// Every check of a server / client started with these options, in the order they run.
std::vector<Check> doctor_server(const ServerOptions& options);
std::vector<Check> doctor_client(const ClientOptions& options);

// One line per check: "ok   name: detail", "warn name: detail; fix: ...", "fail ...", then a
// summary line "N ok, N warn, N fail".
std::string doctor_text(const std::vector<Check>& checks);
// {"program": ..., "ok": true|false, "checks": [{"name", "verdict", "detail", "fix"}...]};
// "ok" is false when any check failed.
std::string doctor_json(std::string_view program, const std::vector<Check>& checks);
// 0 when no check failed (warnings allowed), else kExitError.
int doctor_exit_code(const std::vector<Check>& checks);
const char* verdict_name(Verdict verdict);

// The pieces, exposed for tests. `what` names the memory ("pool", "receive buffer") and
// `setting` the option that sizes it ("memory-mb", "buffer-mb").
// `limit`: RLIMIT_MEMLOCK's soft limit; `pins`: the transport pins registered pages (verbs, efa).
Check check_memlock(uint64_t bytes, std::string_view what, std::string_view setting, rlim_t limit,
                    bool pins);
// `total` / `available`: the host's memory (MemTotal / MemAvailable), bytes.
Check check_memory(uint64_t bytes, std::string_view what, std::string_view setting, uint64_t total,
                   uint64_t available);
// `free_bytes`: what /dev/shm can still hold; only the mock keeps its memory there.
Check check_shm_space(uint64_t bytes, std::string_view what, std::string_view setting,
                      uint64_t free_bytes);
// libfabric providers with an RDM endpoint, their RMA caps and mr_mode; fails only when the
// options ask for libfabric and none can write.
Check check_providers(const TransportOptions& options);
// The gRPC listen address: its port must be free to bind (port 0 always is).
Check check_listen(const std::string& listen_addr);
// TLS files readable, parseable, the key matching the certificate, not expired. `server`: the
// server needs cert + key to turn TLS on; a client needs neither.
std::vector<Check> check_tls(const SecurityOptions& security, bool server);

}  // namespace kvrdma::tools
