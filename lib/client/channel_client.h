// ChannelClient: the client end of one session's request channel. Callers submit encoded
// requests into free slots (each slot gets a fresh generation, so a late completion of an
// abandoned request is never taken for a newer one), ring the doorbell once per batch, and wait
// or poll for the completions. Transport-neutral: it drives any channel::ClientLink.
//
// Thread-safe: a slot belongs to the caller that submitted into it until it is finished (wait or
// poll returned the answer, or abandon()); the free list is guarded by mu_.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "channel/codec.h"
#include "channel/link.h"

namespace kvrdma::client {

class ChannelClient {
 public:
  using Clock = channel::Clock;

  // A submitted request: its slot and generation.
  struct Ticket {
    uint32_t slot = 0;
    uint64_t generation = 0;
  };

  explicit ChannelClient(std::unique_ptr<channel::ClientLink> link);

  size_t slot_bytes() const { return link_->slot_bytes(); }
  // False once a wait found the server gone (UNAVAILABLE): callers then use gRPC, which finds a
  // restarted server and re-opens the session (with a new channel).
  bool usable() const { return !broken_.load(std::memory_order_relaxed); }
  uint32_t slot_count() const { return link_->slot_count(); }
  // Largest PUT value (with `key_len`) one request carries.
  size_t max_put_value(size_t key_len) const;

  // Takes a free slot (waiting up to `deadline` for one when `wait_for_slot`: DEADLINE_EXCEEDED;
  // else RESOURCE_EXHAUSTED at once when none is free), stamps `request` with its slot, generation
  // and the time left to `deadline`, encodes and posts it. Does not ring. INVALID_ARGUMENT when the
  // request does not fit a slot (nothing taken).
  Result<Ticket> submit(channel::Request request, Clock::time_point deadline,
                        bool wait_for_slot = true);
  // Wakes the server if it sleeps; once per batch of submits.
  void ring() {
    rings_.fetch_add(1, std::memory_order_relaxed);
    link_->ring();
  }
  // Waits for the completion of `t` and copies its bytes into `out` (then decode with
  // channel::decode_response). The slot is freed whatever the outcome; on DEADLINE_EXCEEDED the
  // late completion is ignored (generation).
  Status wait(Ticket t, Clock::time_point deadline, std::string* out);
  // Non-blocking: true with `out` filled (slot freed) when the completion arrived.
  bool poll(Ticket t, std::string* out);
  // Gives the slot back without its answer.
  void abandon(Ticket t) { release(t.slot); }

  // Requests posted and doorbells rung so far (Client::channel_use: tests and benchmarks check
  // that a batch rings once).
  uint64_t requests_posted() const { return posted_.load(std::memory_order_relaxed); }
  uint64_t rings() const { return rings_.load(std::memory_order_relaxed); }

  // submit + ring + wait + decode, for blocking callers. `keep` owns the bytes the views of the
  // returned response point into.
  Result<channel::Response> call(channel::Request request, Clock::time_point deadline,
                                 std::string* keep, bool wait_for_slot = true);

 private:
  bool copy_out(Ticket t, std::string* out);
  void release(uint32_t slot);

  const std::unique_ptr<channel::ClientLink> link_;
  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<uint32_t> free_;         // guarded by mu_
  std::vector<uint64_t> generations_;  // guarded by mu_: the last generation used per slot
  std::atomic<bool> broken_{false};
  std::atomic<uint64_t> posted_{0}, rings_{0};
};

// The status a response carries as a whole (OK, or code + message + detail).
Status status_of(const channel::Response& r);
// The status of one result of a response: OK, or the code with a message naming `key`.
Status status_of(const channel::ResultRef& r, std::string_view key);

}  // namespace kvrdma::client
