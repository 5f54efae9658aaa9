// FabricTransport: Transport over a libfabric RDM endpoint with RMA writes.
//
// One fabric/domain/endpoint/AV/CQ per transport, shared by every peer (too many endpoints per
// process fail with -FI_ENOMEM). Both providers that run here (tcp;ofi_rxm, shm) use manual
// progress, so a progress thread reads the CQ continuously: it completes our writes and, just as
// important, lets writes that *target* our memory make progress. Writes use FI_DELIVERY_COMPLETE,
// so a completion means the bytes are visible at the target, not merely sent.
//
// Locking: fi_mu_ serialises every call on the endpoint and CQ (the domain is opened
// FI_THREAD_DOMAIN); completions are delivered with no lock held.
#include "transport/fabric/fabric_transport.h"

#include <fmt/format.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/logging.h"
#include "memory/memory_pool.h"

namespace kvrdma::transport {
namespace {

constexpr std::string_view kDescriptorTag = "kvrdma-fabric-v1";
constexpr uint64_t kMaxPiece = 8ull << 20;  // larger writes are split; pieces stay in flight

Status fi_error(std::string_view call, int rc) {
  return Status(Code::kInternal, fmt::format("{} failed: {} ({})", call, fi_strerror(-rc), rc));
}

// Owns the libfabric objects; regions keep it alive, so MRs close before the domain.
struct Fabric {
  fi_info* info = nullptr;
  fid_fabric* fabric = nullptr;
  fid_domain* domain = nullptr;
  fid_av* av = nullptr;
  fid_cq* cq = nullptr;
  fid_ep* ep = nullptr;
  std::mutex mu;  // guards calls on ep, cq and av
  std::atomic<uint64_t> next_key{1};

  ~Fabric() {
    // Reverse order of opening.
    if (ep) fi_close(&ep->fid);
    if (cq) fi_close(&cq->fid);
    if (av) fi_close(&av->fid);
    if (domain) fi_close(&domain->fid);
    if (fabric) fi_close(&fabric->fid);
    if (info) fi_freeinfo(info);
  }
  uint64_t mr_mode() const { return info->domain_attr->mr_mode; }
  bool virt_addr() const { return (mr_mode() & FI_MR_VIRT_ADDR) != 0; }
};

// The one place remote addresses are computed: VA-based or offset-based per the peer's mr_mode.
uint64_t remote_address(uint64_t base, bool virt_addr, uint64_t offset) {
  return virt_addr ? base + offset : offset;
}

class FabricLocalRegion final : public LocalRegion {
 public:
  FabricLocalRegion(std::shared_ptr<Fabric> f, std::byte* data, size_t size)
      : fabric_(std::move(f)), data_(data), size_(size) {}
  ~FabricLocalRegion() override {
    if (mr_) fi_close(&mr_->fid);
    munmap(data_, size_);
  }
  Status register_memory() {
    Fabric& f = *fabric_;
    uint64_t requested = f.next_key++;
    int rc = fi_mr_reg(f.domain, data_, size_, FI_REMOTE_WRITE | FI_WRITE, 0, requested, 0, &mr_,
                       nullptr);
    if (rc) return fi_error("fi_mr_reg", rc);
    if (f.mr_mode() & FI_MR_ENDPOINT) {
      if ((rc = fi_mr_bind(mr_, &f.ep->fid, 0))) return fi_error("fi_mr_bind", rc);
      if ((rc = fi_mr_enable(mr_))) return fi_error("fi_mr_enable", rc);
    }
    desc_ = (f.mr_mode() & FI_MR_LOCAL) ? fi_mr_desc(mr_) : nullptr;
    uint64_t key = fi_mr_key(mr_);
    descriptor_ = fmt::format("{} {:x} {:x} {} {}", kDescriptorTag,
                              reinterpret_cast<uintptr_t>(data_), key, size_, f.virt_addr() ? 1 : 0);
    return Status();
  }
  std::byte* data() const override { return data_; }
  size_t size() const override { return size_; }
  const std::string& descriptor() const override { return descriptor_; }
  // Registered memory stays reachable only through its key; there is no name to unlink.
  void seal() override {}
  void* desc() const { return desc_; }

 private:
  std::shared_ptr<Fabric> fabric_;
  std::byte* data_;
  size_t size_;
  fid_mr* mr_ = nullptr;
  void* desc_ = nullptr;
  std::string descriptor_;
};

class FabricRemoteRegion final : public RemoteRegion {
 public:
  FabricRemoteRegion(fi_addr_t addr, uint64_t base, uint64_t key, uint64_t size, bool virt)
      : addr(addr), base(base), key(key), size_(size), virt(virt) {}
  size_t size() const override { return size_; }
  fi_addr_t addr;
  uint64_t base, key;
  uint64_t size_;
  bool virt;
};

class FabricPeer final : public Peer {
 public:
  explicit FabricPeer(fi_addr_t addr) : addr_(addr) {}
  Result<std::shared_ptr<RemoteRegion>> attach(std::string_view descriptor) override {
    std::string text(descriptor);
    char tag[32] = {};
    unsigned long long base = 0, key = 0, len = 0;
    int virt = 0;
    char extra = 0;
    if (text.size() > 200 ||
        std::sscanf(text.c_str(), "%31s %llx %llx %llu %d %c", tag, &base, &key, &len, &virt,
                    &extra) != 5 ||
        kDescriptorTag != tag || len == 0 || (virt != 0 && virt != 1)) {
      return Status(Code::kInvalidArgument,
                    "malformed memory descriptor for the libfabric transport (both ends must run "
                    "--mock false with the same --provider)");
    }
    return std::shared_ptr<RemoteRegion>(
        std::make_shared<FabricRemoteRegion>(addr_, base, key, len, virt == 1));
  }

 private:
  fi_addr_t addr_;
};

// One user write, possibly split in pieces.
struct Operation {
  Completion done;
  std::shared_ptr<RemoteRegion> dst;  // kept alive until the write completes
  Transport::Clock::time_point deadline;
  size_t pending = 0;
  bool finished = false;
  Status first_error;
};

// The context libfabric hands back for each piece; outlives a timed-out operation.
struct PieceContext {
  fi_context2 ctx;  // first member: the CQ entry's op_context points here
  std::shared_ptr<Operation> op;
};

class FabricTransport final : public Transport {
 public:
  explicit FabricTransport(std::shared_ptr<Fabric> f) : f_(std::move(f)) {
    char name[256];
    size_t len = sizeof name;
    if (fi_getname(&f_->ep->fid, name, &len) == 0) address_.assign(name, len);
    progress_ = std::thread([this] { progress_loop(); });
  }
  ~FabricTransport() override {
    stop_ = true;
    progress_.join();
    std::vector<std::shared_ptr<Operation>> left;
    {
      std::lock_guard lock(f_->mu);
      for (auto& [p, piece] : pieces_) {
        if (!piece->op->finished) left.push_back(piece->op);
        piece->op->finished = true;
      }
    }
    for (auto& op : left) {
      op->done(Status(Code::kUnavailable, "transport shut down before the write completed"));
    }
    // Pieces are freed after the endpoint closes (Fabric's destructor) so no CQ entry refers to them.
    f_.reset();
  }

  std::string kind() const override { return fmt::format("fabric/{}", f_->info->fabric_attr->prov_name); }
  std::string description() const override {
    return fmt::format("libfabric {}, fabric {}, domain {}", f_->info->fabric_attr->prov_name,
                       f_->info->fabric_attr->name, f_->info->domain_attr->name);
  }
  std::string address() const override { return address_; }

  Result<std::unique_ptr<LocalRegion>> allocate(size_t len) override {
    if (len == 0) return Status(Code::kInvalidArgument, "cannot register 0 bytes");
    size_t size = (len + memory::kPageSize - 1) / memory::kPageSize * memory::kPageSize;
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      return Status(Code::kResourceExhausted, fmt::format("cannot map {} bytes: {}", size, std::strerror(errno)));
    }
    auto r = std::make_unique<FabricLocalRegion>(f_, static_cast<std::byte*>(p), size);
    std::lock_guard lock(f_->mu);
    Status s = r->register_memory();
    if (!s.is_ok()) {
      return s.with_context("registering memory (raise the locked-memory limit: ulimit -l)");
    }
    return std::unique_ptr<LocalRegion>(std::move(r));
  }

  Result<std::shared_ptr<Peer>> connect(std::string_view peer_address) override {
    if (peer_address.empty() || peer_address.size() > 1024) {
      return Status(Code::kInvalidArgument, "empty or oversized libfabric peer address");
    }
    fi_addr_t addr = FI_ADDR_UNSPEC;
    std::lock_guard lock(f_->mu);
    int rc = fi_av_insert(f_->av, peer_address.data(), 1, &addr, 0, nullptr);
    if (rc != 1) {
      return Status(Code::kInvalidArgument,
                    fmt::format("fi_av_insert refused the peer address ({}); both ends must use "
                                "the same provider", rc < 0 ? fi_strerror(-rc) : "not inserted"));
    }
    return std::shared_ptr<Peer>(std::make_shared<FabricPeer>(addr));
  }

  void write(const LocalRegion& src, size_t src_offset, std::shared_ptr<RemoteRegion> dst,
             size_t dst_offset, size_t len, Clock::time_point deadline, Completion done) override {
    auto* local = dynamic_cast<const FabricLocalRegion*>(&src);
    auto* remote = dynamic_cast<FabricRemoteRegion*>(dst.get());
    if (local == nullptr || remote == nullptr) {
      done(Status(Code::kInvalidArgument, "regions do not belong to the libfabric transport"));
      return;
    }
    if (src_offset > src.size() || len > src.size() - src_offset) {
      done(Status(Code::kInvalidArgument, fmt::format("source range [{}, +{}) is outside the "
                                                      "{}-byte local region", src_offset, len, src.size())));
      return;
    }
    if (dst_offset > remote->size() || len > remote->size() - dst_offset) {
      done(Status(Code::kInvalidArgument, fmt::format("destination range [{}, +{}) is outside the "
                                                      "{}-byte remote region", dst_offset, len, remote->size())));
      return;
    }
    if (len == 0) {
      done(Status());
      return;
    }
    auto op = std::make_shared<Operation>();
    op->done = std::move(done);
    op->dst = dst;
    op->deadline = deadline;
    uint64_t piece_max = std::min<uint64_t>(kMaxPiece, f_->info->ep_attr->max_msg_size);
    op->pending = (len + piece_max - 1) / piece_max;
    size_t submitted = 0;
    for (uint64_t pos = 0; pos < len; pos += piece_max) {
      uint64_t n = std::min<uint64_t>(piece_max, len - pos);
      Status s = submit(op, *local, src_offset + pos, *remote, dst_offset + pos, n);
      if (!s.is_ok()) {
        fail_unsubmitted(op, op->pending - submitted, s);
        return;
      }
      ++submitted;
    }
  }

 private:
  // Posts one piece, retrying -FI_EAGAIN with progress until the deadline.
  Status submit(const std::shared_ptr<Operation>& op, const FabricLocalRegion& local, uint64_t src_off,
                const FabricRemoteRegion& remote, uint64_t dst_off, uint64_t n) {
    auto piece = std::make_unique<PieceContext>();
    piece->op = op;
    iovec iov{local.data() + src_off, n};
    void* desc = local.desc();
    fi_rma_iov rma{remote_address(remote.base, remote.virt, dst_off), n, remote.key};
    fi_msg_rma msg{};
    msg.msg_iov = &iov;
    msg.desc = &desc;
    msg.iov_count = 1;
    msg.addr = remote.addr;
    msg.rma_iov = &rma;
    msg.rma_iov_count = 1;
    msg.context = &piece->ctx;
    for (;;) {
      std::vector<std::shared_ptr<Operation>> finished;
      {
        std::lock_guard lock(f_->mu);
        ssize_t rc = fi_writemsg(f_->ep, &msg, FI_COMPLETION | FI_DELIVERY_COMPLETE);
        if (rc == 0) {
          PieceContext* raw = piece.release();
          pieces_.emplace(raw, std::unique_ptr<PieceContext>(raw));
          return Status();
        }
        if (rc != -FI_EAGAIN) return fi_error("fi_writemsg", static_cast<int>(rc));
        read_cq(finished);  // make room: progress our own queue
      }
      deliver(finished);
      if (Clock::now() > op->deadline) {
        return Status(Code::kDeadlineExceeded, "the transmit queue stayed full until the deadline");
      }
      std::this_thread::yield();
    }
  }

  void fail_unsubmitted(const std::shared_ptr<Operation>& op, size_t count, const Status& s) {
    bool call = false;
    {
      std::lock_guard lock(f_->mu);
      if (op->first_error.is_ok()) op->first_error = s;
      op->pending -= count;
      if (op->pending == 0 && !op->finished) {
        op->finished = true;
        call = true;
      }
    }
    if (call) op->done(op->first_error);
  }

  // Reads completions; ops that finish are appended to `finished`. Caller holds f_->mu.
  // Returns how many entries were read.
  int read_cq(std::vector<std::shared_ptr<Operation>>& finished) {
    fi_cq_entry entries[32];
    ssize_t n = fi_cq_read(f_->cq, entries, 32);
    if (n > 0) {
      for (ssize_t i = 0; i < n; ++i) piece_done(entries[i].op_context, Status(), finished);
      return static_cast<int>(n);
    }
    if (n == -FI_EAVAIL) {
      fi_cq_err_entry err{};
      if (fi_cq_readerr(f_->cq, &err, 0) == 1) {
        char buf[256] = {};
        const char* prov = fi_cq_strerror(f_->cq, err.prov_errno, err.err_data, buf, sizeof buf);
        piece_done(err.op_context,
                   Status(Code::kUnavailable, fmt::format("RMA write failed: {} ({})",
                                                          fi_strerror(err.err), prov ? prov : "")),
                   finished);
      }
      return 1;
    }
    return 0;
  }

  void piece_done(void* context, Status s, std::vector<std::shared_ptr<Operation>>& finished) {
    auto it = pieces_.find(static_cast<PieceContext*>(context));
    if (it == pieces_.end()) return;
    auto op = it->second->op;
    pieces_.erase(it);
    if (!s.is_ok() && op->first_error.is_ok()) op->first_error = s;
    if (--op->pending == 0 && !op->finished) {
      op->finished = true;
      finished.push_back(op);
    }
  }

  void expire(std::vector<std::shared_ptr<Operation>>& finished) {
    auto now = Clock::now();
    for (auto& [p, piece] : pieces_) {
      auto& op = piece->op;
      if (!op->finished && op->deadline < now) {
        op->finished = true;
        op->first_error = Status(Code::kDeadlineExceeded,
                                 "RMA write not complete at the target by the deadline");
        finished.push_back(op);
      }
    }
  }

  static void deliver(std::vector<std::shared_ptr<Operation>>& finished) {
    for (auto& op : finished) {
      Status s = op->first_error;
      op->dst.reset();
      op->done(s);
    }
    finished.clear();
  }

  // Manual progress: keep reading the CQ. Busy while traffic flows, then backs off to 200 us
  // naps when idle so an idle process does not burn a core.
  void progress_loop() {
    int idle = 0;
    std::vector<std::shared_ptr<Operation>> finished;
    while (!stop_) {
      int got = 0;
      {
        std::lock_guard lock(f_->mu);
        got = read_cq(finished);
        if (idle % 64 == 0) expire(finished);
      }
      deliver(finished);
      if (got > 0) {
        idle = 0;
      } else if (++idle > 2000) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      } else {
        std::this_thread::yield();
      }
    }
  }

  std::shared_ptr<Fabric> f_;
  std::string address_;
  std::unordered_map<PieceContext*, std::unique_ptr<PieceContext>> pieces_;  // guarded by f_->mu
  std::atomic<bool> stop_{false};
  std::thread progress_;
};

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

Result<std::shared_ptr<Fabric>> open_provider(const std::string& prov, const TransportOptions& o) {
  fi_info* hints = fi_allocinfo();
  hints->caps = FI_RMA | FI_WRITE | FI_REMOTE_WRITE;
  hints->ep_attr->type = FI_EP_RDM;
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  hints->domain_attr->mr_mode =
      FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
  hints->domain_attr->threading = FI_THREAD_DOMAIN;
  hints->fabric_attr->prov_name = strdup(prov.c_str());
  std::string node;
  if (prov != "shm") node = o.fabric_iface.empty() ? "127.0.0.1" : iface_address(o.fabric_iface);
  if (prov != "shm" && node.empty()) {
    fi_freeinfo(hints);
    return Status(Code::kInvalidArgument,
                  fmt::format("--fabric-iface {} has no IPv4 address", o.fabric_iface));
  }
  auto f = std::make_shared<Fabric>();
  int rc = fi_getinfo(FI_VERSION(1, 17), node.empty() ? nullptr : node.c_str(), nullptr,
                      node.empty() ? 0 : FI_SOURCE, hints, &f->info);
  fi_freeinfo(hints);
  if (rc) {
    return Status(Code::kFailedPrecondition,
                  fmt::format("libfabric provider '{}' is not available here ({}); see fi_info -p",
                              prov, fi_strerror(-rc)));
  }
  if ((rc = fi_fabric(f->info->fabric_attr, &f->fabric, nullptr))) return fi_error("fi_fabric", rc);
  if ((rc = fi_domain(f->fabric, f->info, &f->domain, nullptr))) return fi_error("fi_domain", rc);
  fi_cq_attr cq_attr{};
  cq_attr.format = FI_CQ_FORMAT_CONTEXT;
  cq_attr.size = 4096;
  cq_attr.wait_obj = FI_WAIT_NONE;
  if ((rc = fi_cq_open(f->domain, &cq_attr, &f->cq, nullptr))) return fi_error("fi_cq_open", rc);
  fi_av_attr av_attr{};
  av_attr.type = FI_AV_UNSPEC;
  if ((rc = fi_av_open(f->domain, &av_attr, &f->av, nullptr))) return fi_error("fi_av_open", rc);
  if ((rc = fi_endpoint(f->domain, f->info, &f->ep, nullptr))) return fi_error("fi_endpoint", rc);
  if ((rc = fi_ep_bind(f->ep, &f->av->fid, 0))) return fi_error("fi_ep_bind(av)", rc);
  if ((rc = fi_ep_bind(f->ep, &f->cq->fid, FI_TRANSMIT | FI_RECV))) return fi_error("fi_ep_bind(cq)", rc);
  if ((rc = fi_enable(f->ep))) return fi_error("fi_enable", rc);
  return f;
}

}  // namespace

Result<std::unique_ptr<Transport>> make_fabric_transport(const TransportOptions& options) {
  if (options.num_domains != 1) {
    return Status(Code::kFailedPrecondition,
                  "--num-domains above 1 (striping over several domains) is not supported yet; "
                  "use --num-domains 1");
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
    auto f = open_provider(prov, options);
    if (f) return std::unique_ptr<Transport>(std::make_unique<FabricTransport>(std::move(*f)));
    last = f.status();
    KVRDMA_LOG_DEBUG("provider {} not usable: {}", prov, last.message());
  }
  return last;
}

}  // namespace kvrdma::transport
