// Process-wide settings of the gRPC runtime that decide the cost of a small call.
#pragma once

namespace kvrdma::rpc {

// Called by Server::start and Client::connect before they create gRPC objects; idempotent.
//
// Debian builds Abseil without NDEBUG, so every absl::Mutex that gRPC locks also updates
// Abseil's lock-order graph (deadlock detection): measured at 5-8% of the CPU time of a 64-byte
// GET on both sides. We switch the detection off, as release builds of Abseil have it. A program
// that wants it back calls absl::SetMutexDeadlockDetectionMode after connecting.
void tune_runtime();

}  // namespace kvrdma::rpc
