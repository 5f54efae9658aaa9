#include "transport/fabric/fabric_receive.h"

#include <fmt/format.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/logging.h"

namespace kvrdma::transport::fabric {
namespace {

// Multi-receive: a few buffers of many messages each, so one is always posted while another is
// being handed back.
constexpr size_t kMultiBuffers = 4;
constexpr size_t kMultiBufferBytes = 256 << 10;
// Single receives: a ring of one-message buffers, about this much memory, within the counts.
constexpr size_t kRingBytes = 4 << 20;
constexpr size_t kMinRing = 64, kMaxRing = 512;

}  // namespace

// The memory and contexts the provider may still hold after the ring is gone.
struct ReceiveRing::Storage {
  std::byte* data = nullptr;
  size_t bytes = 0;
  size_t buffer_bytes = 0;
  std::vector<fi_context2> contexts;  // one per buffer; a CQ entry's op_context points here
  std::vector<size_t> unposted;       // buffers the provider refused (-FI_EAGAIN); under rail.mu
  std::atomic<bool> any_unposted{false};  // !unposted.empty(), read without the lock
  ~Storage() {
    if (data) munmap(data, bytes);
  }
};

ReceiveRing::ReceiveRing(std::shared_ptr<Rail> rail, size_t max_bytes, bool multi)
    : rail_(std::move(rail)),
      max_bytes_(max_bytes),
      multi_(multi),
      storage_(std::make_shared<Storage>()) {}

Result<std::unique_ptr<ReceiveRing>> ReceiveRing::create(std::shared_ptr<Rail> rail,
                                                         size_t max_bytes) {
  if (max_bytes == 0 || max_bytes > rail->info->ep_attr->max_msg_size || max_bytes > (64 << 20)) {
    return Status(Code::kInvalidArgument,
                  fmt::format("message size {} is outside 1..{} (the provider's max_msg_size)",
                              max_bytes,
                              std::min<uint64_t>(rail->info->ep_attr->max_msg_size, 64 << 20)));
  }
  bool multi = rail->multi_recv();
  std::unique_ptr<ReceiveRing> ring(new ReceiveRing(rail, max_bytes, multi));
  Storage& s = *ring->storage_;
  size_t count = multi ? kMultiBuffers : std::clamp(kRingBytes / max_bytes, kMinRing, kMaxRing);
  s.buffer_bytes = multi ? std::max(kMultiBufferBytes, 16 * max_bytes) : max_bytes;
  s.bytes = count * s.buffer_bytes;
  void* p = mmap(nullptr, s.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    s.bytes = 0;
    return Status(Code::kResourceExhausted,
                  fmt::format("cannot map {} bytes of receive buffers: {}", count * s.buffer_bytes,
                              std::strerror(errno)));
  }
  s.data = static_cast<std::byte*>(p);
  s.contexts.resize(count);
  {
    std::lock_guard lock(rail->mu);
    int rc = fi_mr_reg(rail->domain, s.data, s.bytes, FI_RECV, 0, rail->next_key++, 0, &ring->mr_,
                       nullptr);
    if (rc) return fi_error("fi_mr_reg(receive buffers)", rc);
    if (rail->mr_mode() & FI_MR_ENDPOINT) {
      if ((rc = fi_mr_bind(ring->mr_, &rail->ep->fid, 0))) return fi_error("fi_mr_bind", rc);
      if ((rc = fi_mr_enable(ring->mr_))) return fi_error("fi_mr_enable", rc);
    }
    if (rail->mr_mode() & FI_MR_LOCAL) ring->desc_ = fi_mr_desc(ring->mr_);
    if (multi) {
      // The provider hands a buffer back once less than one whole message fits in it.
      size_t min = max_bytes;
      if ((rc = fi_setopt(&rail->ep->fid, FI_OPT_ENDPOINT, FI_OPT_MIN_MULTI_RECV, &min,
                          sizeof min))) {
        return fi_error("fi_setopt(FI_OPT_MIN_MULTI_RECV)", rc);
      }
    }
  }
  for (size_t i = 0; i < count; ++i) {
    Status st = ring->post(i);
    if (!st.is_ok()) return st.with_context("posting receive buffers");
  }
  return ring;
}

ReceiveRing::~ReceiveRing() {
  std::lock_guard lock(rail_->mu);
  // The endpoint may still hold posted buffers until it closes: keep their memory until then.
  // The registration goes now, while its domain is open; a late receive into it fails cleanly.
  if (mr_) close_fid(&mr_->fid, "receive buffers' registration");
  rail_->retired.push_back(storage_);
}

bool ReceiveRing::owns(const void* context) const {
  const auto& c = storage_->contexts;
  auto* p = static_cast<const fi_context2*>(context);
  return !c.empty() && p >= c.data() && p < c.data() + c.size();
}

Status ReceiveRing::post(size_t index) {
  Storage& s = *storage_;
  iovec iov{s.data + index * s.buffer_bytes, s.buffer_bytes};
  void* desc = desc_;
  fi_msg msg{};
  msg.msg_iov = &iov;
  msg.desc = &desc;
  msg.iov_count = 1;
  msg.addr = FI_ADDR_UNSPEC;
  msg.context = &s.contexts[index];
  std::lock_guard lock(rail_->mu);
  ssize_t rc = fi_recvmsg(rail_->ep, &msg, multi_ ? FI_MULTI_RECV : 0);
  if (rc == -FI_EAGAIN) {
    s.unposted.push_back(index);
    s.any_unposted = true;
    return Status();
  }
  if (rc) return fi_error("fi_recvmsg", static_cast<int>(rc));
  return Status();
}

void ReceiveRing::repost(void* context) {
  size_t index = static_cast<fi_context2*>(context) - storage_->contexts.data();
  Status st = post(index);
  if (!st.is_ok()) KVRDMA_LOG_WARN("receive buffer {} not reposted: {}", index, st.message());
}

void ReceiveRing::retry() {
  if (!storage_->any_unposted.load()) return;
  std::vector<size_t> again;
  {
    std::lock_guard lock(rail_->mu);
    again.swap(storage_->unposted);
    storage_->any_unposted = false;
  }
  for (size_t i : again) {
    Status st = post(i);
    if (!st.is_ok()) KVRDMA_LOG_WARN("receive buffer {} not reposted: {}", i, st.message());
  }
}

}  // namespace kvrdma::transport::fabric
