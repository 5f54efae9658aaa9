#include "kvrdma/status.h"

#include <fmt/format.h>

namespace kvrdma {

const char* code_name(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kNotFound: return "NOT_FOUND";
    case Code::kInvalidArgument: return "INVALID_ARGUMENT";
    case Code::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case Code::kFailedPrecondition: return "FAILED_PRECONDITION";
    case Code::kUnavailable: return "UNAVAILABLE";
    case Code::kDeadlineExceeded: return "DEADLINE_EXCEEDED";
    case Code::kPermissionDenied: return "PERMISSION_DENIED";
    case Code::kInternal: return "INTERNAL";
  }
  return "UNKNOWN";
}

Status::Status(Code code, std::string message) : Status(code, std::move(message), {}) {}

Status::Status(Code code, std::string message, std::string detail)
    : state_(code == Code::kOk ? nullptr
                               : std::make_shared<const State>(
                                     State{code, std::move(message), std::move(detail)})) {}

namespace {
const std::string kEmpty;
}

const std::string& Status::message() const { return state_ ? state_->message : kEmpty; }

const std::string& Status::detail() const { return state_ ? state_->detail : kEmpty; }

std::string Status::to_string() const {
  if (is_ok()) return "OK";
  return fmt::format("{}: {}", code_name(state_->code), state_->message);
}

Status Status::with_context(std::string_view context) const {
  if (is_ok()) return *this;
  return Status(state_->code, fmt::format("{}: {}", context, state_->message), state_->detail);
}

}  // namespace kvrdma
