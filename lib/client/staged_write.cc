#include "client/staged_write.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

namespace kvrdma::client {
namespace {

// The writes in flight of one staged_write; completions run on the transport's thread.
struct InFlight {
  std::mutex mu;
  std::condition_variable cv;
  int left = 0;   // guarded by mu
  Status failed;  // the first failure; guarded by mu
};

}  // namespace

Status staged_write(transport::Transport& transport, ReceiveBuffer& buffer, std::string_view value,
                    std::shared_ptr<transport::RemoteRegion> dst, uint64_t dst_offset,
                    std::chrono::steady_clock::time_point deadline) {
  memory::MemoryPool& pool = *buffer.pool;
  // Several chunks per value so copies overlap writes; all in flight fit in a quarter of the
  // buffer; never so small that the per-write cost shows.
  const uint64_t quarter = std::max<uint64_t>(pool.size() / 4, 1);
  const uint64_t per_value = (value.size() + kStagedInFlight - 1) / kStagedInFlight;
  const uint64_t chunk =
      std::clamp<uint64_t>(std::min(quarter / kStagedInFlight, per_value), 256 << 10, 4 << 20);
  auto state = std::make_shared<InFlight>();
  Status failed;
  for (uint64_t pos = 0; pos < value.size();) {
    {
      std::unique_lock lock(state->mu);
      // Bounded by the transport's deadline: every write completes by then.
      state->cv.wait(lock, [&] { return state->left < kStagedInFlight; });
      if (!state->failed.is_ok()) break;
    }
    const uint64_t n = std::min<uint64_t>(std::min(chunk, pool.size()), value.size() - pos);
    auto a = pool.allocate_until(n, deadline);  // extents come back as chunks complete
    if (!a) {
      failed = a.status();
      break;
    }
    std::memcpy(a->data(), value.data() + pos, n);
    const uint64_t src = a->offset();
    // A Completion must be copyable: the extent rides in a shared_ptr, freed when it runs.
    auto extent = std::make_shared<memory::Allocation>(std::move(*a));
    {
      std::lock_guard lock(state->mu);
      ++state->left;
    }
    transport.write(*buffer.region, src, dst, dst_offset + pos, n, deadline,
                    [state, extent](Status s) mutable {
                      extent.reset();  // the bytes left: the space may be reused
                      std::lock_guard lock(state->mu);
                      if (!s.is_ok() && state->failed.is_ok()) state->failed = std::move(s);
                      --state->left;
                      state->cv.notify_all();
                    });
    pos += n;
  }
  std::unique_lock lock(state->mu);
  state->cv.wait(lock, [&] { return state->left == 0; });
  return failed.is_ok() ? state->failed : failed;
}

}  // namespace kvrdma::client
