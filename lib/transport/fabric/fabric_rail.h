// A rail: one libfabric endpoint with everything it needs (fabric, domain, AV, CQ), opened
// together and closed in reverse order. A FabricTransport has one rail per --num-domains.
//
// Thread safety: `mu` serialises every call on the endpoint, CQ, AV and domain (domains are
// opened FI_THREAD_DOMAIN). Fields are set once by open_rails() and never change afterwards.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvrdma/options.h"
#include "kvrdma/status.h"

namespace kvrdma::transport::fabric {

struct Rail {
  fi_info* info = nullptr;
  fid_fabric* fabric = nullptr;
  fid_domain* domain = nullptr;
  fid_av* av = nullptr;
  fid_cq* cq = nullptr;
  fid_ep* ep = nullptr;
  std::string address;  // fi_getname of ep
  int wait_fd = -1;     // the CQ's wait object (FI_WAIT_FD), -1 when the provider has none
  std::mutex mu;
  std::atomic<uint64_t> next_key{1};  // requested MR keys, unique within the domain
  // Contexts of writes still posted when their transport went away: the provider may hold them
  // until the endpoint closes, so they are freed only after that (members outlive ~Rail's body).
  std::vector<std::shared_ptr<void>> retired;  // guarded by mu
  // shm only: peer names inserted into `av`, kept while the peer's process lives. libfabric
  // 1.17's shm crashes the *peer* (SIGSEGV in its next fi_cq_read) when we fi_av_remove it and
  // later insert it again, as a session re-opened after a lease expiry does; so an entry is
  // removed only once its process has exited (swept when a new name is inserted).
  struct KeptPeer {
    fi_addr_t addr;
    pid_t pid;  // 0: unknown, never swept
  };
  std::unordered_map<std::string, KeptPeer> kept;  // guarded by mu

  Rail() = default;
  Rail(const Rail&) = delete;
  Rail& operator=(const Rail&) = delete;
  ~Rail();

  uint64_t mr_mode() const { return info->domain_attr->mr_mode; }
  bool virt_addr() const { return (mr_mode() & FI_MR_VIRT_ADDR) != 0; }
  const char* provider() const { return info->fabric_attr->prov_name; }
  bool is_shm() const { return std::string_view(provider()) == "shm"; }
  bool multi_recv() const { return (info->caps & FI_MULTI_RECV) != 0; }
  size_t inject_size() const { return info->tx_attr->inject_size; }
  size_t cq_data_size() const { return info->domain_attr->cq_data_size; }
};

// "<call> failed: <fi_strerror> (<rc>)", INTERNAL.
Status fi_error(std::string_view call, int rc);

// fi_close, with a warning naming `what` when the provider refuses (an object it still holds
// stays open and its memory with it: the log says which).
void close_fid(fid* f, std::string_view what);

// Opens options.num_domains rails of the provider options.provider names (auto: efa,
// verbs;ofi_rxm, shm, tcp;ofi_rxm — the first that opens). Rail i uses the i-th domain fi_getinfo
// lists for that provider; with fewer domains than rails (one NIC) rails share a domain's NIC,
// each with its own domain object and endpoint. FAILED_PRECONDITION naming the provider when
// fi_info does not offer it; INVALID_ARGUMENT for a bad provider, interface or count.
Result<std::vector<std::shared_ptr<Rail>>> open_rails(const TransportOptions& options);

}  // namespace kvrdma::transport::fabric
