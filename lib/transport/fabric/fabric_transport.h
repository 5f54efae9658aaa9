// FabricTransport: the libfabric implementation of Transport (FI_EP_RDM, FI_RMA).
#pragma once

#include <memory>

#include "kvrdma/options.h"
#include "transport/transport.h"

namespace kvrdma::transport {

// Opens the provider `options.provider` names (auto: efa, verbs;ofi_rxm, shm, tcp;ofi_rxm).
// FAILED_PRECONDITION naming the provider when fi_info does not list it.
Result<std::unique_ptr<Transport>> make_fabric_transport(const TransportOptions& options);

// The name of each FabricTransport's progress thread (what `top -H` and /proc/<pid>/task/*/comm
// show).
inline constexpr char kProgressThreadName[] = "kvrdma-progress";

}  // namespace kvrdma::transport
