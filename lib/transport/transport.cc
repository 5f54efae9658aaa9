// What every transport shares: choosing one from the options, and a blocking write.
#include "transport/transport.h"

#include <future>
#include <memory>
#include <utility>

#include "transport/fabric/fabric_transport.h"
#include "transport/mock_transport.h"

namespace kvrdma::transport {

uint64_t default_inline_threshold(std::string_view kind) {
  // A transport write costs a fixed round of its own (the client's reservation, the write, its
  // completion) but no copies through protobuf; inline costs two copies per byte. Where the two
  // cross depends on that fixed cost: tiny for memcpy, larger for libfabric shm, largest for tcp,
  // whose writes go through the provider's own sockets and progress thread.
  if (kind.starts_with("fabric/tcp")) return 256ull << 10;
  if (kind.starts_with("fabric/shm")) return 64ull << 10;
  // The mock, and RDMA providers (verbs, efa: not measured here; a NIC write is no dearer than
  // the mock's memcpy).
  return 32ull << 10;
}

uint64_t default_put_inline_threshold(std::string_view kind) {
  // A PUT above the threshold costs two more round trips (reserve, commit) around the write, so
  // it turns later than a GET: mock 64-128 KiB, shm 128-256 KiB, tcp at 256 KiB as GETs
  // (bench/README.md, "Inline threshold"). The lower end of each range.
  if (kind.starts_with("fabric/tcp")) return 256ull << 10;
  if (kind.starts_with("fabric/shm")) return 128ull << 10;
  return 64ull << 10;
}

Result<std::unique_ptr<Transport>> make_transport(const TransportOptions& options) {
  if (options.mock) return make_mock_transport();
  return make_fabric_transport(options);
}

Status write_and_wait(Transport& transport, const LocalRegion& src, size_t src_offset,
                      std::shared_ptr<RemoteRegion> dst, size_t dst_offset, size_t len,
                      Transport::Clock::time_point deadline) {
  // The promise is shared with the completion, so it stays valid whichever thread runs `done`
  // and whether that happens inside write() (the mock) or later (libfabric).
  auto done = std::make_shared<std::promise<Status>>();
  std::future<Status> result = done->get_future();
  transport.write(src, src_offset, std::move(dst), dst_offset, len, deadline,
                  [done](Status s) { done->set_value(std::move(s)); });
  // No timeout of our own: every transport completes each write by its deadline
  // (DEADLINE_EXCEEDED at worst), and returning earlier would let the caller free `src` while
  // the transport may still read it.
  return result.get();
}

}  // namespace kvrdma::transport
