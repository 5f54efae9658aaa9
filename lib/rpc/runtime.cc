#include "rpc/runtime.h"

#include <absl/synchronization/mutex.h>

#include <mutex>

namespace kvrdma::rpc {

void tune_runtime() {
  static std::once_flag once;
  std::call_once(once, [] { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); });
}

}  // namespace kvrdma::rpc
