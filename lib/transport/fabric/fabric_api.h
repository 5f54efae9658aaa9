// libfabric's exported entry points, loaded with dlopen on first use instead of linked.
//
// Why: Debian's libfabric links the PSM providers' libraries, and libinfinipath's load-time
// constructor pins the process to CPU 0 and spins in a >= 100 ms timing loop; every process
// linked with -lfabric paid ~0.2 s at start (an empty C program: 0.20 s vs 0.00 s), mock-only
// ones too. Loaded here, only a process that opens a libfabric transport (or doctor's check)
// pays it, once. The rest of libfabric's API is inline calls through the objects these return,
// so these five are all the symbols the library needs (`nm -D --undefined-only libkvrdma.so`).
//
// Thread-safe: load() runs once; the functions are libfabric's own.
#pragma once

#include <rdma/fabric.h>

#include "kvrdma/status.h"

namespace kvrdma::transport::fabric_api {

// Loads libfabric.so.1 once. FAILED_PRECONDITION naming the library, the loader's reason and the
// package to install when it cannot; the same answer on every later call.
Status load();

// libfabric's functions of the same names; call only after load() succeeded.
int getinfo(uint32_t version, const char* node, const char* service, uint64_t flags,
            const fi_info* hints, fi_info** info);
void freeinfo(fi_info* info);
fi_info* dupinfo(const fi_info* info);
inline fi_info* allocinfo() { return dupinfo(nullptr); }
int fabric(fi_fabric_attr* attr, fid_fabric** fabric, void* context);
// fi_strerror; safe before load() too ("libfabric error N").
const char* strerror(int errnum);

}  // namespace kvrdma::transport::fabric_api
