#include "transport/fabric/fabric_rail.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_errno.h>

#include <cstdlib>
#include <cstring>

#include "common/logging.h"
#include "transport/fabric/fabric_api.h"

namespace kvrdma::transport::fabric {
namespace {

constexpr uint32_t kMaxRails = 16;

// The IPv4 address of interface `name`, for tcp/verbs; empty when unknown.
std::string iface_address(const std::string& name) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return {};
  std::string out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && name == i->ifa_name) {
      char buf[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
      out = buf;
      break;
    }
  }
  freeifaddrs(list);
  return out;
}

// Owns a fi_getinfo list.
struct InfoList {
  fi_info* head = nullptr;
  ~InfoList() {
    if (head) fabric_api::freeinfo(head);
  }
};

// Writes, and messages for the request channel (FI_MSG; FI_MULTI_RECV when `multi_recv`).
Status get_infos(const std::string& prov, const TransportOptions& o, bool multi_recv,
                 InfoList& out) {
  fi_info* hints = fabric_api::allocinfo();
  hints->caps = FI_RMA | FI_WRITE | FI_REMOTE_WRITE | FI_MSG | FI_SEND | FI_RECV;
  if (multi_recv) hints->caps |= FI_MULTI_RECV;
  hints->ep_attr->type = FI_EP_RDM;
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  // What this code can honour; the provider answers with the bits it needs.
  hints->domain_attr->mr_mode =
      FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
  hints->domain_attr->threading = FI_THREAD_DOMAIN;
  hints->fabric_attr->prov_name = strdup(prov.c_str());
  std::string node;
  if (prov != "shm") node = o.fabric_iface.empty() ? "127.0.0.1" : iface_address(o.fabric_iface);
  if (prov != "shm" && node.empty()) {
    fabric_api::freeinfo(hints);
    return Status(Code::kInvalidArgument,
                  fmt::format("--fabric-iface {} has no IPv4 address", o.fabric_iface));
  }
  // ofi_rxm injects up to its bounce buffers' size (16 KiB by default) when asked, instead of
  // the 64 bytes it offers unasked: a request channel message (a slot, 8 KiB by default) is then
  // injected and needs no completion, which over tcp halved a small GET's round trip
  // (docs/channel-fabric.md). Where the buffers are smaller, ask again without.
  if (prov.find("ofi_rxm") != std::string::npos) hints->tx_attr->inject_size = 16 << 10;
  int rc = fabric_api::getinfo(FI_VERSION(1, 17), node.empty() ? nullptr : node.c_str(), nullptr,
                               node.empty() ? 0 : FI_SOURCE, hints, &out.head);
  if (rc && hints->tx_attr->inject_size != 0) {
    hints->tx_attr->inject_size = 0;
    rc = fabric_api::getinfo(FI_VERSION(1, 17), node.empty() ? nullptr : node.c_str(), nullptr,
                             node.empty() ? 0 : FI_SOURCE, hints, &out.head);
  }
  fabric_api::freeinfo(hints);
  if (rc) {
    return Status(Code::kFailedPrecondition,
                  fmt::format("libfabric provider '{}' is not available here ({}); see fi_info -p",
                              prov, fabric_api::strerror(-rc)));
  }
  return Status();
}

Result<std::shared_ptr<Rail>> open_rail(const fi_info* info) {
  auto r = std::make_shared<Rail>();
  r->info = fabric_api::dupinfo(info);
  if (r->info == nullptr) return Status(Code::kResourceExhausted, "fi_dupinfo failed");
  int rc;
  if ((rc = fabric_api::fabric(r->info->fabric_attr, &r->fabric, nullptr)))
    return fi_error("fi_fabric", rc);
  if ((rc = fi_domain(r->fabric, r->info, &r->domain, nullptr))) return fi_error("fi_domain", rc);
  fi_cq_attr cq_attr{};
  // DATA: a write_with_data into us raises an entry whose data names the request it answers.
  cq_attr.format = FI_CQ_FORMAT_DATA;
  cq_attr.size = 4096;
  // A file descriptor lets the progress thread sleep in poll() until the provider has work,
  // instead of spinning (tcp;ofi_rxm has one; shm does not, and then the thread polls).
  cq_attr.wait_obj = FI_WAIT_FD;
  if (fi_cq_open(r->domain, &cq_attr, &r->cq, nullptr) == 0) {
    int fd = -1;
    if (fi_control(&r->cq->fid, FI_GETWAIT, &fd) == 0 && fd >= 0) {
      r->wait_fd = fd;
    } else {
      close_fid(&r->cq->fid, "completion queue");
      r->cq = nullptr;
    }
  }
  if (r->cq == nullptr) {
    cq_attr.wait_obj = FI_WAIT_NONE;
    if ((rc = fi_cq_open(r->domain, &cq_attr, &r->cq, nullptr))) return fi_error("fi_cq_open", rc);
  }
  fi_av_attr av_attr{};
  av_attr.type = FI_AV_UNSPEC;
  if ((rc = fi_av_open(r->domain, &av_attr, &r->av, nullptr))) return fi_error("fi_av_open", rc);
  if ((rc = fi_endpoint(r->domain, r->info, &r->ep, nullptr))) return fi_error("fi_endpoint", rc);
  if ((rc = fi_ep_bind(r->ep, &r->av->fid, 0))) return fi_error("fi_ep_bind(av)", rc);
  if ((rc = fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV))) {
    return fi_error("fi_ep_bind(cq)", rc);
  }
  if ((rc = fi_enable(r->ep))) return fi_error("fi_enable", rc);
  char name[256];
  size_t len = sizeof name;
  if ((rc = fi_getname(&r->ep->fid, name, &len))) return fi_error("fi_getname", rc);
  r->address.assign(name, len);
  return r;
}

Result<std::vector<std::shared_ptr<Rail>>> open_provider(const std::string& prov,
                                                         const TransportOptions& o) {
  InfoList infos;
  // Multi-receive buffers where the provider offers them (tcp;ofi_rxm, shm), else single ones.
  // KVRDMA_FABRIC_NO_MULTI_RECV (any value) forces single ones, so tests cover that path here.
  const bool multi = std::getenv("KVRDMA_FABRIC_NO_MULTI_RECV") == nullptr;
  if (!multi || !get_infos(prov, o, true, infos).is_ok()) {
    KVRDMA_RETURN_IF_ERROR(get_infos(prov, o, false, infos));
    // A provider may offer secondary caps unasked: without the hint, single buffers it is.
    for (fi_info* i = infos.head; i; i = i->next) {
      i->caps &= ~FI_MULTI_RECV;
      if (i->rx_attr) i->rx_attr->caps &= ~FI_MULTI_RECV;
    }
  }
  // Distinct domains (NICs) in the order fi_getinfo ranks them.
  std::vector<const fi_info*> domains;
  for (const fi_info* i = infos.head; i; i = i->next) {
    bool seen = false;
    for (const fi_info* d : domains)
      seen = seen || std::strcmp(d->domain_attr->name, i->domain_attr->name) == 0;
    if (!seen) domains.push_back(i);
  }
  std::vector<std::shared_ptr<Rail>> rails;
  for (uint32_t k = 0; k < o.num_domains; ++k) {
    auto r = open_rail(domains[k % domains.size()]);
    if (!r)
      return r.status().with_context(fmt::format("opening rail {} of {}", k + 1, o.num_domains));
    rails.push_back(std::move(*r));
  }
  if (o.num_domains > domains.size()) {
    KVRDMA_LOG_INFO(
        "{} rails over {} domain(s) of {}: rails share a NIC (separate endpoints and "
        "queues, not more wire bandwidth)",
        o.num_domains, domains.size(), prov);
  }
  return rails;
}

}  // namespace

Rail::~Rail() {
  // Reverse order of opening.
  if (ep) close_fid(&ep->fid, "endpoint");
  if (cq) close_fid(&cq->fid, "completion queue");
  if (av) close_fid(&av->fid, "address vector");
  if (domain) close_fid(&domain->fid, "domain");
  if (fabric) close_fid(&fabric->fid, "fabric");
  if (info) fabric_api::freeinfo(info);
}

void close_fid(fid* f, std::string_view what) {
  if (int rc = fi_close(f)) {
    KVRDMA_LOG_WARN("libfabric refused to close its {}: {} ({})", what, fabric_api::strerror(-rc),
                    rc);
  }
}

Status fi_error(std::string_view call, int rc) {
  return Status(Code::kInternal,
                fmt::format("{} failed: {} ({})", call, fabric_api::strerror(-rc), rc));
}

Result<std::vector<std::shared_ptr<Rail>>> open_rails(const TransportOptions& options) {
  KVRDMA_RETURN_IF_ERROR(fabric_api::load());
  if (options.num_domains < 1 || options.num_domains > kMaxRails) {
    return Status(Code::kInvalidArgument,
                  fmt::format("--num-domains {} is outside 1..{}", options.num_domains, kMaxRails));
  }
  std::vector<std::string> candidates;
  const std::string& p = options.provider;
  if (p == "auto") candidates = {"efa", "verbs;ofi_rxm", "shm", "tcp;ofi_rxm"};
  else if (p == "verbs") candidates = {"verbs;ofi_rxm"};
  else if (p == "tcp") candidates = {"tcp;ofi_rxm"};
  else if (p == "efa" || p == "shm") candidates = {p};
  else return Status(Code::kInvalidArgument, fmt::format("unknown provider '{}'", p));
  Status last;
  for (const auto& prov : candidates) {
    auto rails = open_provider(prov, options);
    if (rails) return rails;
    last = rails.status();
    KVRDMA_LOG_DEBUG("provider {} not usable: {}", prov, last.message());
  }
  return last;
}

}  // namespace kvrdma::transport::fabric
