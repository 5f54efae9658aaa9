// The request channel over shared memory, for processes on one host: the link of the mock
// transport and of libfabric shm (see uses_shared_memory_link). The client owns a slot region (a
// POSIX shared-memory object, like the mock's registered memory): per slot a control line, a
// request area and a completion area. The server owns one doorbell page that all its clients map: a
// futex word whose NEED_WAKEUP bit the server raises before it sleeps, so a client makes the
// wake-up syscall only then (io_uring SQPOLL's pattern). Each completion area has its own futex
// word, so a caller sleeps only when its answer is not there yet, and the server wakes it only when
// it sleeps.
//
// Offer:  "kvrdma-chan-mock-v1 <region name> <region bytes> <slots> <slot bytes>"
// Accept: "kvrdma-chan-mock-v1 <doorbell name> <doorbell bytes> <server pid>" (a waiting client
// checks the pid every 50 ms, so a server that died fails its calls with UNAVAILABLE at once).
// Names are checked with shm::is_object_name before anything is mapped.
//
// Hostile clients: the server copies a request out of the region before it decodes it and
// re-reads the slot's generation after the copy (a request scribbled over mid-copy is dropped);
// every index and length read from the region is checked against the sizes the server computed
// itself; completions are written only inside the mapped region. A client can make the server
// spin (by ringing constantly) but cannot block it or make it touch memory outside the mapping.
#pragma once

#include <cstdint>
#include <memory>

#include "channel/link.h"

namespace kvrdma::channel {

inline constexpr uint32_t kDefaultSlots = 64;
inline constexpr size_t kDefaultSlotBytes = 8192;
inline constexpr uint32_t kMaxSlots = 1024;

// Client side: allocates a region of `slots` slots of `slot_bytes` each. RESOURCE_EXHAUSTED when
// /dev/shm is full, INVALID_ARGUMENT for sizes outside 1..kMaxSlots and kMinSlotBytes..
// kMaxSlotBytes. The region's name is unlinked at accept() (the server has mapped it by then) or
// at destruction.
Result<std::unique_ptr<ClientLink>> make_mock_client_link(uint32_t slots, size_t slot_bytes);

// Server side: creates the doorbell page. Thread-safe.
Result<std::unique_ptr<LinkHost>> make_mock_link_host();

// True when sessions over `transport_kind` carry their request channel on this link: the mock,
// and libfabric shm. Over shm libfabric's own messages would serve, but 1.17's shm takes a lock
// inside the *target's* memory for every message and write, so a client killed at the wrong
// moment leaves the server's channel thread spinning there for good (docs/channel-fabric.md);
// this link keeps no lock in the client's memory. Values above the inline size are still pushed
// by the transport's own writes.
bool uses_shared_memory_link(std::string_view transport_kind);

// True when `offer` is a mock link's offer (so a server picks the matching host).
bool is_mock_offer(std::string_view offer);

}  // namespace kvrdma::channel
