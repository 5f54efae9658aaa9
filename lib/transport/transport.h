// The data-plane interface: allocate registered memory, name our endpoint, connect to a peer,
// attach a peer's registered memory, and write local bytes into it with a completion.
// Addresses and memory descriptors are opaque bytes that only the transport produces and parses,
// so the control plane never learns which transport runs. Every implementation supports all of it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "kvrdma/client.h"  // MemoryKind
#include "kvrdma/options.h"
#include "kvrdma/status.h"

namespace kvrdma::transport {

// Memory allocated and registered by a transport; page-aligned; peers reach it by descriptor().
// Owned by the caller; must outlive every write that reads from it. Thread-safe (immutable).
class LocalRegion {
 public:
  virtual ~LocalRegion() = default;
  virtual std::byte* data() const = 0;
  virtual size_t size() const = 0;
  // Opaque bytes a peer passes to Peer::attach.
  virtual const std::string& descriptor() const = 0;
  // No further peer may attach; peers already attached keep working. The mock unlinks its
  // shared-memory object here, so a killed process leaves nothing behind; libfabric needs nothing.
  virtual void seal() = 0;
};

// A peer's registered memory, as attached from its descriptor. Thread-safe (immutable).
class RemoteRegion {
 public:
  virtual ~RemoteRegion() = default;
  virtual size_t size() const = 0;
};

// A connected peer endpoint. Thread-safe.
class Peer {
 public:
  virtual ~Peer() = default;
  // Attaches memory the peer registered. INVALID_ARGUMENT for a malformed descriptor,
  // PERMISSION_DENIED for memory this transport must not map (e.g. a path that is not one of the
  // mock's own shared-memory objects), FAILED_PRECONDITION when it cannot be reached.
  virtual Result<std::shared_ptr<RemoteRegion>> attach(std::string_view descriptor) = 0;
};

// Called exactly once per write, on a transport thread or inline in write(). OK means the bytes
// are complete and visible *at the target*, not merely sent.
using Completion = std::function<void(Status)>;

// While alive, a peer may write into this process's memory soon (a GET is outstanding, a PUT
// reservation is open). Empty for transports that need nothing; see Transport::expect_writes.
using WriteExpectation = std::shared_ptr<void>;

class Messages;

class Transport {
 public:
  using Clock = std::chrono::steady_clock;

  virtual ~Transport() = default;

  // Both ends must report the same kind to talk: "mock", "fabric/tcp;ofi_rxm", "fabric/shm"...
  virtual std::string kind() const = 0;
  // For people: the provider and domain, e.g. "libfabric tcp;ofi_rxm, domain lo".
  virtual std::string description() const = 0;
  // Our endpoint, opaque, for the peer's connect().
  virtual std::string address() const = 0;

  // Allocates `len` bytes (rounded up to pages) and registers them for remote writes.
  virtual Result<std::unique_ptr<LocalRegion>> allocate(size_t len) = 0;

  // Registers memory the caller owns (`ptr`, `len` bytes; any alignment) for remote writes into
  // it and as the source of write(); the region's offsets count from `ptr`. The memory must
  // outlive the region and every write that touches it; the region never frees it. libfabric
  // honours the domain's mr_mode (a memlock failure names `ulimit -l`); the mock cannot map
  // another process's heap and answers FAILED_PRECONDITION (use allocate()). INVALID_ARGUMENT for
  // a null pointer, 0 bytes or a kind this transport does not know.
  virtual Result<std::unique_ptr<LocalRegion>> register_memory(void* ptr, size_t len,
                                                               MemoryKind kind) = 0;

  // Connects to a peer by the address its transport reported.
  virtual Result<std::shared_ptr<Peer>> connect(std::string_view peer_address) = 0;

  // Writes src[src_offset, +len) into dst[dst_offset, +len). Ranges are checked against both
  // regions first: INVALID_ARGUMENT and nothing written when either falls outside. `dst` and the
  // region behind `src` are kept alive by the caller until `done` runs. A write not complete by
  // `deadline` completes with DEADLINE_EXCEEDED. Large writes may be split internally.
  virtual void write(const LocalRegion& src, size_t src_offset, std::shared_ptr<RemoteRegion> dst,
                     size_t dst_offset, size_t len, Clock::time_point deadline,
                     Completion done) = 0;

  // Says that a peer may write into our memory until the returned value is destroyed. With
  // manual progress (libfabric's tcp and shm) a write into us completes only while we poll our
  // endpoint: a transport polls eagerly while any expectation lives (or its own writes are in
  // flight) and otherwise sleeps up to 100 ms (a write or a new expectation wakes it), so an idle
  // process costs no CPU. The mock returns an empty value. Cheap, thread-safe; may outlive the
  // transport.
  virtual WriteExpectation expect_writes() = 0;

  // Small messages on the same endpoint, for a request channel on the data plane; null where the
  // transport has none (the mock: its channel is shared memory of its own). Lives as long as the
  // transport.
  virtual Messages* messages() { return nullptr; }
};

// Messages beside RMA writes (libfabric: FI_MSG on the transport's RDM endpoint). A client sends
// requests with send(); a server answers with write_with_data(), which puts the answer's bytes in
// the client's registered memory and raises one completion there carrying a small number, so a
// single completion at the client proves delivery. Bytes received are untrusted: the transport
// only frames them. There is no sender identity (tcp;ofi_rxm has no FI_SOURCE): a message must
// name its session itself. Thread-safe; handlers run on the transport's progress thread and must
// not block.
class Messages {
 public:
  using Clock = Transport::Clock;
  using MessageHandler = std::function<void(std::span<const std::byte>)>;
  using DataHandler = std::function<void(uint64_t)>;

  virtual ~Messages() = default;

  // Bytes of data write_with_data carries to the target: 8, or 4 on verbs.
  virtual size_t data_bytes() const = 0;

  // Server side: posts receive buffers for messages of up to `max_bytes` and calls `on_message`
  // for each one received, with bytes valid only during the call. A longer message is dropped.
  // Once per transport: FAILED_PRECONDITION on a second call.
  virtual Status listen(size_t max_bytes, MessageHandler on_message) = 0;

  // Client side: `on_data` gets the data of every write_with_data into this process, after its
  // bytes are visible. Set before any peer may write with data; replaces an earlier handler.
  virtual void on_remote_data(DataHandler on_data) = 0;

  // Sends src[offset, +len) to `peer` (from this transport's connect()). `done` runs once `src`
  // may be reused, inline when the provider copies small messages at once (fi_inject); OK says
  // the message left, not that it was received. DEADLINE_EXCEEDED if not sent by `deadline`.
  virtual void send(Peer& peer, const LocalRegion& src, size_t offset, size_t len,
                    Clock::time_point deadline, Completion done) = 0;

  // Drives the endpoint once on the caller's thread: reads the completion queues and runs the
  // handlers here, so a thread waiting for a message or an answer (manual progress) need not
  // hand off to the progress thread. Never blocks: 0 at once when another thread is polling.
  // Returns how many completions it read.
  virtual size_t progress() = 0;

  // Transport::write that also raises, at the target, one on_remote_data(data) once the bytes
  // are visible there. `done` means src may be reused, not delivered (no FI_DELIVERY_COMPLETE:
  // the target's completion is the proof). Only the low data_bytes() bytes of `data` travel.
  virtual void write_with_data(const LocalRegion& src, size_t src_offset,
                               std::shared_ptr<RemoteRegion> dst, size_t dst_offset, size_t len,
                               uint64_t data, Clock::time_point deadline, Completion done) = 0;
};

// The transport the options name: MockTransport when options.mock, else FabricTransport with the
// chosen provider.
Result<std::unique_ptr<Transport>> make_transport(const TransportOptions& options);

// The inline threshold of a server that sets none (ServerOptions::inline_threshold 0): the value
// size up to which bytes inside the RPC beat a transport write for a transport of this `kind`
// (as Transport::kind() reports it), measured at 16 GETs / PUTs in flight (bench/README.md,
// "Inline threshold"). The server announces it in HelloReply, so clients follow it.
uint64_t default_inline_threshold(std::string_view kind);
// The same for a single PUT's value (announced as HelloReply.put_inline_threshold): higher, as a
// two-phase PUT adds two round trips of its own.
uint64_t default_put_inline_threshold(std::string_view kind);

// Writes and waits for the completion; for callers that may block (the client, tests).
Status write_and_wait(Transport& transport, const LocalRegion& src, size_t src_offset,
                      std::shared_ptr<RemoteRegion> dst, size_t dst_offset, size_t len,
                      Transport::Clock::time_point deadline);

}  // namespace kvrdma::transport
