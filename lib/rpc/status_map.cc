#include "rpc/status_map.h"

#include <fmt/format.h>

namespace kvrdma::rpc {
namespace {

struct Pair {
  Code code;
  grpc::StatusCode grpc;
};

constexpr Pair kTable[] = {
    {Code::kOk, grpc::StatusCode::OK},
    {Code::kNotFound, grpc::StatusCode::NOT_FOUND},
    {Code::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
    {Code::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
    {Code::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION},
    {Code::kUnavailable, grpc::StatusCode::UNAVAILABLE},
    {Code::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
    {Code::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED},
    {Code::kInternal, grpc::StatusCode::INTERNAL},
};

}  // namespace

grpc::Status to_grpc(const Status& status) {
  for (const auto& p : kTable) {
    if (p.code == status.code()) return grpc::Status(p.grpc, status.message(), status.detail());
  }
  return grpc::Status(grpc::StatusCode::INTERNAL, status.message());
}

Status from_grpc(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return Status();
  std::string prefix = what.empty() ? std::string() : fmt::format("{}: ", what);
  // gRPC's own size check names no setting; say which one decides it.
  if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
      status.error_message().find("larger than max") != std::string::npos) {
    return Status(Code::kResourceExhausted,
                  fmt::format("{}{}; the server's ServerOptions::max_message_bytes / "
                              "max-message-mb caps one gRPC message (0: twice "
                              "ServerOptions::inline_threshold / inline-threshold + 4 MiB): send "
                              "fewer keys per batch or raise it",
                              prefix, status.error_message()));
  }
  for (const auto& p : kTable) {
    if (p.grpc == status.error_code()) {
      return Status(p.code, prefix + status.error_message(), status.error_details());
    }
  }
  switch (status.error_code()) {
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::ABORTED:
      return Status(Code::kUnavailable, prefix + "call cancelled: " + status.error_message());
    case grpc::StatusCode::UNAUTHENTICATED:
      return Status(Code::kPermissionDenied, prefix + status.error_message());
    case grpc::StatusCode::OUT_OF_RANGE:
      return Status(Code::kInvalidArgument, prefix + status.error_message());
    default:
      return Status(Code::kInternal,
                    fmt::format("{}gRPC error {}: {}", prefix,
                                static_cast<int>(status.error_code()), status.error_message()));
  }
}

void to_item(v1::ItemStatus* out, const Status& status) {
  out->set_code(static_cast<uint32_t>(status.code()));
  if (status.is_ok()) return;
  out->set_message(status.message());
  if (!status.detail().empty()) (void)out->mutable_detail()->ParseFromString(status.detail());
}

Status from_item(const v1::ItemStatus& item) {
  if (item.code() == 0) return Status();
  Code c = item.code() <= static_cast<uint32_t>(Code::kInternal) ? static_cast<Code>(item.code())
                                                                 : Code::kInternal;
  return Status(c, item.message(), item.has_detail() ? item.detail().SerializeAsString() : "");
}

Status wrong_owner(const v1::WrongOwner& w, std::string message) {
  v1::ErrorDetail d;
  *d.mutable_wrong_owner() = w;
  return Status(Code::kFailedPrecondition, std::move(message), d.SerializeAsString());
}

Status session_lost(uint64_t session_id, std::string message) {
  v1::ErrorDetail d;
  d.mutable_session_lost()->set_session_id(session_id);
  return Status(Code::kFailedPrecondition, std::move(message), d.SerializeAsString());
}

Status replicated_slot(uint32_t slot, std::string message) {
  v1::ErrorDetail d;
  d.mutable_replicated_slot()->set_slot(slot);
  return Status(Code::kFailedPrecondition, std::move(message), d.SerializeAsString());
}

bool is_replicated_slot(const Status& status) {
  if (status.detail().empty()) return false;
  v1::ErrorDetail d;
  return d.ParseFromString(status.detail()) && d.has_replicated_slot();
}

std::optional<v1::WrongOwner> wrong_owner_of(const Status& status) {
  if (status.detail().empty()) return std::nullopt;
  v1::ErrorDetail d;
  if (!d.ParseFromString(status.detail()) || !d.has_wrong_owner()) return std::nullopt;
  return d.wrong_owner();
}

bool is_session_lost(const Status& status) {
  if (status.detail().empty()) return false;
  v1::ErrorDetail d;
  return d.ParseFromString(status.detail()) && d.has_session_lost();
}

}  // namespace kvrdma::rpc
