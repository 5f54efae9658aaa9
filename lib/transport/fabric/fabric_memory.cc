#include "transport/fabric/fabric_memory.h"

#include "transport/fabric/fabric_api.h"

#include <fmt/format.h>
#include <poll.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

namespace kvrdma::transport::fabric {
namespace {

constexpr std::string_view kDescriptorTag = "kvrdma-fabric-v2";
constexpr std::string_view kAddressMagic = "kvf1";
constexpr size_t kMaxRails = 16;
constexpr size_t kMaxNameBytes = 256;

// One unsigned number that must fill `text` exactly (no sign, no spaces).
bool parse_number(std::string_view text, int base, uint64_t& out) {
  if (text.empty() || text.size() > 20) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return ec == std::errc() && end == text.data() + text.size();
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (size_t start = 0;;) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

Status malformed(std::string_view what) {
  return Status(Code::kInvalidArgument,
                fmt::format("malformed libfabric {} from the peer (both ends must run --mock false "
                            "with the same --provider)",
                            what));
}

// The process of a shm endpoint name "fi_shm://<pid>:<domain>:<endpoint>"; 0 for other names.
pid_t shm_pid(std::string_view name) {
  constexpr std::string_view kPrefix = "fi_shm://";
  if (name.substr(0, kPrefix.size()) != kPrefix) return 0;
  name.remove_prefix(kPrefix.size());
  uint64_t pid = 0;
  size_t colon = name.find(':');
  if (colon == std::string_view::npos || !parse_number(name.substr(0, colon), 10, pid)) return 0;
  return pid > 0 && pid < (1u << 22) ? static_cast<pid_t>(pid) : 0;
}

// True once process `pid` has exited (gone, zombie or dead). /proc/<pid>/stat reads
// "<pid> (<comm>) <state> ...".
bool process_exited(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  char buf[512] = {};
  size_t n = f ? std::fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f) std::fclose(f);
  const char* paren = n ? std::strrchr(buf, ')') : nullptr;
  return paren == nullptr || paren[1] != ' ' || paren[2] == 'Z' || paren[2] == 'X';
}

// The AV address of `name` on a shm rail: the kept one, or a new one (after dropping the entries
// of peers that exited). Under rail.mu.
int shm_address(Rail& rail, std::string_view name, fi_addr_t& out) {
  std::string key(name);
  if (auto it = rail.kept.find(key); it != rail.kept.end()) {
    out = it->second.addr;
    return 1;
  }
  for (auto it = rail.kept.begin(); it != rail.kept.end();) {
    if (it->second.pid > 0 && process_exited(it->second.pid)) {
      fi_av_remove(rail.av, &it->second.addr, 1, 0);
      it = rail.kept.erase(it);
    } else {
      ++it;
    }
  }
  int rc = fi_av_insert(rail.av, name.data(), 1, &out, 0, nullptr);
  if (rc == 1) rail.kept.emplace(std::move(key), Rail::KeptPeer{out, shm_pid(name)});
  return rc;
}

}  // namespace

FabricLocalRegion::FabricLocalRegion(std::vector<std::shared_ptr<Rail>> rails, std::byte* data,
                                     size_t size, bool owned)
    : rails_(std::move(rails)), data_(data), size_(size), owned_(owned) {}

FabricLocalRegion::~FabricLocalRegion() {
  for (fid_mr* mr : mrs_) close_fid(&mr->fid, "memory registration");
  if (owned_) munmap(data_, size_);
}

Result<std::unique_ptr<FabricLocalRegion>> FabricLocalRegion::create(
    std::vector<std::shared_ptr<Rail>> rails, size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return Status(Code::kResourceExhausted,
                  fmt::format("cannot map {} bytes: {}", size, std::strerror(errno)));
  }
  std::unique_ptr<FabricLocalRegion> r(
      new FabricLocalRegion(std::move(rails), static_cast<std::byte*>(p), size, true));
  KVRDMA_RETURN_IF_ERROR(r->register_with_rails());
  return r;
}

Result<std::unique_ptr<FabricLocalRegion>> FabricLocalRegion::wrap(
    std::vector<std::shared_ptr<Rail>> rails, void* ptr, size_t size) {
  std::unique_ptr<FabricLocalRegion> r(
      new FabricLocalRegion(std::move(rails), static_cast<std::byte*>(ptr), size, false));
  KVRDMA_RETURN_IF_ERROR(r->register_with_rails());
  return r;
}

// FI_MR_LOCAL, FI_MR_ENDPOINT, FI_MR_PROV_KEY and FI_MR_VIRT_ADDR are honoured here: a local
// descriptor kept per rail where required, the MR bound to the endpoint where required, the key
// the provider chose (requested keys are only a hint), and the base address in the descriptor.
Status FabricLocalRegion::register_with_rails() {
  std::string keys;
  for (const auto& rail : rails_) {
    std::lock_guard lock(rail->mu);
    fid_mr* mr = nullptr;
    // FI_SEND: the request channel sends from these regions too (verbs checks it).
    int rc = fi_mr_reg(rail->domain, data_, size_, FI_REMOTE_WRITE | FI_WRITE | FI_SEND, 0,
                       rail->next_key++, 0, &mr, nullptr);
    if (rc) return fi_error("fi_mr_reg", rc);
    mrs_.push_back(mr);  // closed by the destructor from here on, whatever fails next
    if (rail->mr_mode() & FI_MR_ENDPOINT) {
      if ((rc = fi_mr_bind(mr, &rail->ep->fid, 0))) return fi_error("fi_mr_bind", rc);
      if ((rc = fi_mr_enable(mr))) return fi_error("fi_mr_enable", rc);
    }
    descs_.push_back((rail->mr_mode() & FI_MR_LOCAL) ? fi_mr_desc(mr) : nullptr);
    keys += fmt::format("{}{:x}", keys.empty() ? "" : ",", fi_mr_key(mr));
  }
  // Every rail is the same provider, so they agree on FI_MR_VIRT_ADDR.
  descriptor_ = fmt::format("{} {:x} {} {} {}", kDescriptorTag, reinterpret_cast<uintptr_t>(data_),
                            size_, rails_[0]->virt_addr() ? 1 : 0, keys);
  return Status();
}

Result<std::shared_ptr<RemoteRegion>> FabricPeer::attach(std::string_view descriptor) {
  if (descriptor.size() > 512) return malformed("memory descriptor (too long)");
  auto f = split(descriptor, ' ');
  uint64_t base = 0, length = 0;
  if (f.size() != 5 || f[0] != kDescriptorTag || !parse_number(f[1], 16, base) ||
      !parse_number(f[2], 10, length) || length == 0 || (f[3] != "0" && f[3] != "1")) {
    return malformed("memory descriptor");
  }
  bool virt = f[3] == "1";
  if (virt && base > UINT64_MAX - length) return malformed("memory descriptor (region wraps)");
  std::vector<uint64_t> keys;
  for (std::string_view k : split(f[4], ',')) {
    uint64_t key = 0;
    if (!parse_number(k, 16, key) || keys.size() == kMaxRails) {
      return malformed("memory descriptor (keys)");
    }
    keys.push_back(key);
  }
  return std::shared_ptr<RemoteRegion>(
      std::make_shared<FabricRemoteRegion>(addresses_, base, length, virt, std::move(keys)));
}

bool PeerAddresses::alive(size_t their_rail) const {
  if (dead.load()) return false;
  if (pids.empty()) return true;
  const size_t i = their_rail % pids.size();
  const pid_t pid = pids[i];
  if (pid <= 0) return true;
  bool exited;
  if (i < pidfds.size() && pidfds[i] >= 0) {
    pollfd p{pidfds[i], POLLIN, 0};
    exited = ::poll(&p, 1, 0) != 0;  // readable (or an error): gone
  } else {
    exited = process_exited(pid);
  }
  if (exited) dead.store(true);
  return !exited;
}

PeerAddresses::~PeerAddresses() {
  for (int fd : pidfds) {
    if (fd >= 0) ::close(fd);
  }
  for (size_t r = 0; r < rails.size() && r < addr.size(); ++r) {
    if (rails[r]->is_shm()) continue;  // kept in Rail::kept (see there)
    std::lock_guard lock(rails[r]->mu);
    for (fi_addr_t a : addr[r]) fi_av_remove(rails[r]->av, &a, 1, 0);
  }
}

std::string encode_address(const std::vector<std::shared_ptr<Rail>>& rails) {
  std::string out(kAddressMagic);
  out += static_cast<char>(rails.size());
  for (const auto& r : rails) {
    out += static_cast<char>(r->address.size() & 0xff);
    out += static_cast<char>(r->address.size() >> 8);
    out += r->address;
  }
  return out;
}

Result<std::shared_ptr<const PeerAddresses>> insert_peer(
    const std::vector<std::shared_ptr<Rail>>& rails, std::string_view address) {
  if (address.substr(0, kAddressMagic.size()) != kAddressMagic) return malformed("address");
  address.remove_prefix(kAddressMagic.size());
  if (address.empty()) return malformed("address");
  size_t count = static_cast<unsigned char>(address[0]);
  address.remove_prefix(1);
  if (count == 0 || count > kMaxRails) return malformed("address (rail count)");
  // fi_av_insert reads an address of the provider's own format and length and is never told the
  // length: a short one would be read past its end. Binary formats (sockaddr) have one length;
  // string formats (shm's names) must be one NUL-terminated string.
  const Rail& ours = *rails[0];
  bool is_string = ours.info->addr_format == FI_ADDR_STR;
  std::vector<std::string_view> names;
  for (size_t i = 0; i < count; ++i) {
    if (address.size() < 2) return malformed("address (truncated)");
    size_t n = static_cast<unsigned char>(address[0]) |
               (static_cast<size_t>(static_cast<unsigned char>(address[1])) << 8);
    address.remove_prefix(2);
    if (n > address.size()) return malformed("address (truncated)");
    std::string_view name = address.substr(0, n);
    address.remove_prefix(n);
    bool ok = is_string ? !name.empty() && name.size() <= kMaxNameBytes &&
                              name.find('\0') == name.size() - 1
                        : name.size() == ours.address.size();
    if (!ok) {
      return Status(Code::kInvalidArgument,
                    fmt::format("libfabric peer address of {} bytes is not a {} address (ours has "
                                "{} bytes); both ends must use the same --provider",
                                name.size(), ours.provider(), ours.address.size()));
    }
    names.push_back(name);
  }
  if (!address.empty()) return malformed("address (trailing bytes)");
  auto peer = std::make_shared<PeerAddresses>();
  peer->rails = rails;
  for (std::string_view name : names) {
    pid_t pid = shm_pid(name);
    peer->pids.push_back(pid);
    // A pid reused after the peer died would be watched wrongly: open only while it is alive.
    int fd =
        pid > 0 && !process_exited(pid) ? static_cast<int>(syscall(SYS_pidfd_open, pid, 0)) : -1;
    peer->pidfds.push_back(fd);
  }
  for (const auto& rail : rails) {
    std::lock_guard lock(rail->mu);
    auto& row = peer->addr.emplace_back();
    for (std::string_view name : names) {
      fi_addr_t a = FI_ADDR_UNSPEC;
      int rc = rail->is_shm() ? shm_address(*rail, name, a)
                              : fi_av_insert(rail->av, name.data(), 1, &a, 0, nullptr);
      if (rc != 1) {
        return Status(Code::kInvalidArgument,
                      fmt::format("fi_av_insert refused the peer address ({}); both ends must use "
                                  "the same provider",
                                  rc < 0 ? fabric_api::strerror(-rc) : "not inserted"));
      }
      row.push_back(a);
    }
  }
  return std::shared_ptr<const PeerAddresses>(std::move(peer));
}

}  // namespace kvrdma::transport::fabric
