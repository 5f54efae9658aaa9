// The request channel's link: how request and completion bytes move between one client session
// and the server, whatever carries them. The mock carries them through a shared-memory slot region
// with a futex doorbell (mock_link.h); libfabric carries them as messages on the RDM endpoint
// (requests by fi_send/fi_inject, answers by fi_writedata into the client's completion area with
// the slot in the CQ data). The codec (codec.h) defines what the bytes mean; a link never looks
// inside them.
//
// A session has `slot_count()` slots. A slot holds one request at a time; the client stamps each
// request with a generation that is unique and increasing per slot, and the server's completion
// carries the same generation back, so a late or stale completion is never taken for a newer
// request. Every byte a link hands the server came from the client and is untrusted: the server
// decodes it with the codec, which validates every field.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "kvrdma/status.h"

namespace kvrdma::channel {

using Clock = std::chrono::steady_clock;

// Client side of one session's link. Each slot is used by one caller at a time (the caller that
// owns the slot, see ChannelClient); different slots may be used from different threads at once.
class ClientLink {
 public:
  virtual ~ClientLink() = default;

  virtual uint32_t slot_count() const = 0;
  // Largest request, and largest completion, one slot carries (header included).
  virtual size_t slot_bytes() const = 0;

  // Opaque bytes the client offers at Hello (HelloRequest.channel_link) so the server can open
  // its end; produced and parsed by the link alone.
  virtual std::string offer() const = 0;
  // Completes the link with what the server accepted (HelloReply.channel_link). Called once,
  // before any post(). INVALID_ARGUMENT when the bytes are malformed.
  virtual Status accept(std::string_view server_accept) = 0;

  // Places `request` (at most slot_bytes()) in slot `slot` under `generation`. The server may see
  // it at once if it is polling, but is not woken: call ring() after the last post of a batch.
  // INVALID_ARGUMENT for a slot out of range or a request too large (nothing posted).
  virtual Status post(uint32_t slot, uint64_t generation, std::span<const std::byte> request) = 0;
  // Makes every posted request visible and wakes the server only when it sleeps (one syscall
  // per batch at most, none while the server polls).
  virtual void ring() = 0;

  // The completion bytes of slot `slot` when its completion for `generation` has arrived; an
  // empty span while it has not (a completion for another generation is never returned). The
  // span stays valid until the slot's next post().
  virtual std::span<const std::byte> poll(uint32_t slot, uint64_t generation) = 0;
  // Waits until poll(slot, generation) would return bytes, or until `deadline` (then
  // DEADLINE_EXCEEDED), or the link fails (UNAVAILABLE). Spins briefly, then sleeps: a caller
  // whose answer is already there makes no syscall.
  virtual Status wait(uint32_t slot, uint64_t generation, Clock::time_point deadline) = 0;
};

// One request as the server takes it from a link: bytes copied out of the client's area, so a
// client scribbling over its area afterwards cannot change what the server decodes.
struct IncomingRequest {
  uint32_t slot = 0;
  uint64_t generation = 0;
  std::span<const std::byte> bytes;  // valid until the next take() on the same link
};

// Server side of one session's link. take() is called by one channel thread at a time;
// complete() may run on any thread (a transport write's completion), for different slots at once.
class ServerLink {
 public:
  virtual ~ServerLink() = default;

  virtual uint32_t slot_count() const = 0;
  virtual size_t slot_bytes() const = 0;

  // Calls `fn` for each new request, at most `max` of them (so one client cannot starve the
  // others); returns how many. Never blocks. Slot and generation are the client's values, checked
  // only for slot < slot_count(); a request the link cannot read whole is skipped.
  virtual size_t take(size_t max, const std::function<void(const IncomingRequest&)>& fn) = 0;
  // Delivers `response` (at most slot_bytes()) as slot `slot`'s completion for `generation`, and
  // wakes the client only when it sleeps. INVALID_ARGUMENT for a slot out of range or a response
  // too large (nothing written); UNAVAILABLE when the link is gone.
  virtual Status complete(uint32_t slot, uint64_t generation,
                          std::span<const std::byte> response) = 0;
};

// The server's end of every link of one kind: opens a session's ServerLink from the client's
// offer, and lets channel threads sleep until any link has work. Thread-safe.
class LinkHost {
 public:
  virtual ~LinkHost() = default;

  // Opens the server end from a client's offer; `accept` receives the bytes to return in
  // HelloReply.channel_link. INVALID_ARGUMENT for a malformed offer, PERMISSION_DENIED for memory
  // the link must not map, RESOURCE_EXHAUSTED when the sizes exceed the server's limits.
  virtual Result<std::unique_ptr<ServerLink>> open(std::string_view offer, std::string* accept) = 0;

  // Sleeping, io_uring SQPOLL style: prepare_sleep() raises NEED_WAKEUP; the caller then scans
  // every link once more and calls sleep() only if that scan found nothing (cancel_sleep()
  // otherwise), so no ring() is ever lost. sleep() returns on a ring(), wake(), or `deadline`.
  virtual void prepare_sleep() = 0;
  virtual void cancel_sleep() = 0;
  virtual void sleep(Clock::time_point deadline) = 0;
  // Wakes every sleeping channel thread (shutdown, a new session).
  virtual void wake() = 0;
};

}  // namespace kvrdma::channel
