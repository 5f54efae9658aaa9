// What every transport shares: choosing one from the options, and a blocking write.
#include "transport/transport.h"

#include <future>
#include <memory>
#include <utility>

#include "transport/fabric/fabric_transport.h"
#include "transport/mock_transport.h"

namespace kvrdma::transport {

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
