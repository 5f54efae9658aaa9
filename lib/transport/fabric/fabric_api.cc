#include "transport/fabric/fabric_api.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <mutex>

namespace kvrdma::transport::fabric_api {

namespace {

// The soname Debian's libfabric1 installs; the ABI the headers we build with describe.
constexpr const char* kLibrary = "libfabric.so.1";

struct Api {
  Status loaded;
  decltype(&::fi_getinfo) getinfo = nullptr;
  decltype(&::fi_freeinfo) freeinfo = nullptr;
  decltype(&::fi_dupinfo) dupinfo = nullptr;
  decltype(&::fi_fabric) fabric = nullptr;
  decltype(&::fi_strerror) strerror = nullptr;
};

template <typename F>
bool resolve(void* handle, const char* name, F* out, std::string* missing) {
  // dlsym gives the default version of a versioned symbol: the one a link against this
  // libfabric's headers would bind (e.g. fi_getinfo@@FABRIC_1.3).
  *out = reinterpret_cast<F>(dlsym(handle, name));
  if (*out == nullptr && missing->empty()) *missing = name;
  return *out != nullptr;
}

Api load_once() {
  Api api;
  // RTLD_LOCAL: its symbols stay out of the global namespace; never unloaded (providers keep
  // threads and handlers for the process's life).
  void* handle = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    api.loaded = Status(Code::kFailedPrecondition,
                        fmt::format("cannot load {} ({}): install Debian's libfabric1, or use "
                                    "the mock transport",
                                    kLibrary, why ? why : "unknown reason"));
    return api;
  }
  std::string missing;
  resolve(handle, "fi_getinfo", &api.getinfo, &missing);
  resolve(handle, "fi_freeinfo", &api.freeinfo, &missing);
  resolve(handle, "fi_dupinfo", &api.dupinfo, &missing);
  resolve(handle, "fi_fabric", &api.fabric, &missing);
  resolve(handle, "fi_strerror", &api.strerror, &missing);
  if (!missing.empty()) {
    api.loaded = Status(Code::kFailedPrecondition,
                        fmt::format("{} has no {}: install libfabric >= 1.17", kLibrary, missing));
  }
  return api;
}

const Api& api() {
  static const Api instance = load_once();
  return instance;
}

}  // namespace

Status load() { return api().loaded; }

int getinfo(uint32_t version, const char* node, const char* service, uint64_t flags,
            const fi_info* hints, fi_info** info) {
  return api().getinfo(version, node, service, flags, hints, info);
}

void freeinfo(fi_info* info) { api().freeinfo(info); }

fi_info* dupinfo(const fi_info* info) { return api().dupinfo(info); }

int fabric(fi_fabric_attr* attr, fid_fabric** fabric, void* context) {
  return api().fabric(attr, fabric, context);
}

const char* strerror(int errnum) {
  if (api().strerror != nullptr) return api().strerror(errnum);
  thread_local std::string text;
  text = fmt::format("libfabric error {}", errnum);
  return text.c_str();
}

}  // namespace kvrdma::transport::fabric_api
