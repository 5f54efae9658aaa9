// Placeholder until FabricTransport lands (issue 6); replaced whole by its implementation.
#include "transport/fabric/fabric_transport.h"

namespace kvrdma::transport {

Result<std::unique_ptr<Transport>> make_fabric_transport(const TransportOptions& options) {
  return Status(Code::kFailedPrecondition,
                "libfabric transport (provider '" + options.provider +
                    "') is not available in this build; use --mock true");
}

}  // namespace kvrdma::transport
