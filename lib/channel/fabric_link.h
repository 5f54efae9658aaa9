// The request channel over libfabric (tcp;ofi_rxm and shm here; verbs and efa by the same code),
// on the transport's own RDM endpoint through transport::Messages:
//
// - Requests: the client sends each one as a message (fi_inject when it fits the provider's
//   inject size, else fi_send from a registered slot area): a 32-byte link header
//   {u32 magic "kcf1" | u32 link id | u64 link secret | u32 slot | u32 0 | u64 generation}, then
//   the codec's bytes. The server's transport receives them into posted (multi-)receive buffers
//   on its progress thread; the host routes each by link id, checks the secret (there is no
//   sender address on tcp;ofi_rxm, so the secret, issued at Hello, is what ties a message to its
//   session) and keeps the newest request per slot until the channel thread takes it.
// - Completions: the server writes {u64 generation | u32 length | u32 0 | bytes} into the slot's
//   place in the client's registered completion area with fi_writedata; the CQ data names the
//   client's link, the slot and the generation's low bits. Whichever client thread polls takes
//   that entry (the bytes are visible once it exists), checks the generation the area holds
//   against the one the slot waits for, and wakes the caller if it sleeps. A completion for a
//   stale generation is ignored.
// - CQ data layout: 8 bytes (tcp, shm, efa): link 16 bits | slot 16 | generation 32; 4 bytes
//   (verbs): link 8 | slot 10 | generation 14. The area's full 64-bit generation decides.
//
// Offer:  "kvrdma-chan-fabric-v1 <slots> <slot bytes> <link index> <client address hex>
//          <completion descriptor hex>"
// Accept: "kvrdma-chan-fabric-v1 <link id> <secret hex> <server address hex>"
//
// Manual progress: one waiting caller per link (the leader) drives the endpoint itself for a
// spin budget learned from what its spins caught, then sleeps; the others sleep on their slot at
// once. A sleeping caller holds a write expectation, so the progress thread polls for it where
// the provider gives no descriptor to wake on. The server's progress thread sleeps on the CQ
// descriptor (tcp) or polls with a backoff (shm, see fabric_transport.cc); the channel thread
// polls the inboxes (yielding when empty), then sleeps on the host. docs/channel-fabric.md has
// the measurements behind each rule.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "channel/link.h"
#include "transport/transport.h"

namespace kvrdma::channel {

// Largest slot a fabric host accepts (its receive buffers are sized for it).
inline constexpr size_t kMaxFabricSlotBytes = 64 << 10;

// Client side over `transport` (which must outlive the link). FAILED_PRECONDITION when the
// transport has no messages (the mock) or its CQ data cannot name the slots; INVALID_ARGUMENT for
// sizes outside 1..kMaxSlots slots of kMinSlotBytes..kMaxFabricSlotBytes (a multiple of 8).
Result<std::unique_ptr<ClientLink>> make_fabric_client_link(transport::Transport& transport,
                                                            uint32_t slots, size_t slot_bytes);

// Server side: listens for messages on `transport` (which must outlive the host).
// FAILED_PRECONDITION when the transport has no messages or already listens.
Result<std::unique_ptr<LinkHost>> make_fabric_link_host(transport::Transport& transport);

// True when the request channel may ride `transport`'s messages: it has them, and it is not
// libfabric shm (whose writes take a lock in the target's memory: a killed client can leave the
// channel thread spinning there for good; docs/channel-fabric.md).
bool fabric_link_allowed(transport::Transport& transport);

// True when `offer` is a fabric link's offer (so a server picks the matching host).
bool is_fabric_offer(std::string_view offer);

}  // namespace kvrdma::channel
