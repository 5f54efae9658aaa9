// The one mapping between kvrdma::Status and grpc::Status, used on both ends of the wire, and
// between kvrdma::Status and the per-item v1::ItemStatus of batches and streamed replies.
#pragma once

#include <grpcpp/support/status.h>

#include <optional>

#include "kv_cache.pb.h"
#include "kvrdma/status.h"

namespace kvrdma::rpc {

grpc::Status to_grpc(const Status& status);
// A gRPC failure becomes the matching kvrdma code; transport-level failures (UNAVAILABLE,
// DEADLINE_EXCEEDED, CANCELLED) get a message that names `what` and the server address.
Status from_grpc(const grpc::Status& status, std::string_view what = {});

// An item's outcome on the wire: the kvrdma code, and the message when not OK.
void to_item(v1::ItemStatus* out, const Status& status);
// Back to a Status; a code this build does not know becomes INTERNAL.
Status from_item(const v1::ItemStatus& item);

// Typed details (v1::ErrorDetail), carried through to_grpc/from_grpc and to_item/from_item.
// FAILED_PRECONDITION naming the node that serves the key's slot.
Status wrong_owner(const v1::WrongOwner& w, std::string message);
// FAILED_PRECONDITION: the server does not know the session (see v1::SessionLost).
Status session_lost(uint64_t session_id, std::string message);
// FAILED_PRECONDITION: a write of a replicated slot sent over the request channel; nothing was
// done, the client sends it over gRPC (see v1::ReplicatedSlot).
Status replicated_slot(uint32_t slot, std::string message);
std::optional<v1::WrongOwner> wrong_owner_of(const Status& status);
bool is_session_lost(const Status& status);
bool is_replicated_slot(const Status& status);

}  // namespace kvrdma::rpc
