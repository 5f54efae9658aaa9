// The one mapping between kvrdma::Status and grpc::Status, used on both ends of the wire.
#pragma once

#include <grpcpp/support/status.h>

#include "kvrdma/status.h"

namespace kvrdma::rpc {

grpc::Status to_grpc(const Status& status);
// A gRPC failure becomes the matching kvrdma code; transport-level failures (UNAVAILABLE,
// DEADLINE_EXCEEDED, CANCELLED) get a message that names `what` and the server address.
Status from_grpc(const grpc::Status& status, std::string_view what = {});

}  // namespace kvrdma::rpc
