// Status and Result<T>: how every fallible kvrdma call reports failure. No exceptions in the
// library's own control flow. Codes are shared with the wire and the C ABI; never renumber one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "kvrdma/export.h"

namespace kvrdma {

enum class Code : int {
  kOk = 0,
  kNotFound = 1,
  kInvalidArgument = 2,
  kResourceExhausted = 3,
  kFailedPrecondition = 4,
  kUnavailable = 5,
  kDeadlineExceeded = 6,
  kPermissionDenied = 7,
  kInternal = 8,
};

// "OK", "NOT_FOUND", ...; "UNKNOWN" for a value outside the enum.
KVRDMA_EXPORT const char* code_name(Code code);

// A code and a message a person can act on. OK carries no allocation.
class [[nodiscard]] KVRDMA_EXPORT Status {
 public:
  Status() = default;
  Status(Code code, std::string message);
  // With a machine-readable detail: opaque bytes the library produces and parses (a serialized
  // wire ErrorDetail, e.g. "wrong owner" in cluster mode). Callers test it through the library,
  // never by parsing message text.
  Status(Code code, std::string message, std::string detail);

  static Status ok() { return Status(); }

  bool is_ok() const { return state_ == nullptr; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return state_ ? state_->code : Code::kOk; }
  // Empty for OK.
  const std::string& message() const;
  // Empty when the status carries no detail.
  const std::string& detail() const;
  // "NOT_FOUND: key 'a' is not in the cache".
  std::string to_string() const;

  // Prefixes the message with context: "PutBegin: " + message. The detail is kept.
  Status with_context(std::string_view context) const;

 private:
  struct State {
    Code code;
    std::string message;
    std::string detail;
  };
  std::shared_ptr<const State> state_;  // null means OK; shared so copies are cheap
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must not be OK

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }

  // The error; OK when the result holds a value.
  Status status() const { return is_ok() ? Status() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kvrdma

// Returns early from a function that returns Status or Result<T> when `expr` fails.
#define KVRDMA_RETURN_IF_ERROR(expr)          \
  do {                                        \
    ::kvrdma::Status kvrdma_s_ = (expr);      \
    if (!kvrdma_s_.is_ok()) return kvrdma_s_; \
  } while (0)
