// What FabricTransport hands to and takes from peers: registered regions and their descriptors,
// endpoint addresses, and attached peer memory. All of it is opaque bytes to the control plane.
//
// - Address: "kvf1", one byte N, then per rail a 2-byte little-endian length and fi_getname's
//   bytes. A peer's rails need not match ours in number; any of our rails can write to any of
//   theirs, with the key their rail's domain issued.
// - Descriptor: "kvrdma-fabric-v2 <base hex> <length> <virt 0|1> <key hex>[,<key hex>...]", one
//   key per rail of the owner. With virt = 1 (FI_MR_VIRT_ADDR) a remote address is base + offset,
//   else the offset alone: remote_address() is the one place that decides.
// Both are parsed strictly: they come from a peer, so anything unexpected is refused.
#pragma once

#include <rdma/fabric.h>

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvrdma/status.h"
#include "transport/fabric/fabric_rail.h"
#include "transport/transport.h"

namespace kvrdma::transport::fabric {

// Memory mapped here and registered with every rail. Thread-safe (immutable after create()).
class FabricLocalRegion final : public LocalRegion {
 public:
  // Maps `size` bytes (a multiple of the page size) and registers them with each rail.
  static Result<std::unique_ptr<FabricLocalRegion>> create(std::vector<std::shared_ptr<Rail>> rails,
                                                           size_t size);
  // Registers `size` bytes at `ptr`, which the caller owns and keeps mapped while this lives.
  static Result<std::unique_ptr<FabricLocalRegion>> wrap(std::vector<std::shared_ptr<Rail>> rails,
                                                         void* ptr, size_t size);
  ~FabricLocalRegion() override;

  std::byte* data() const override { return data_; }
  size_t size() const override { return size_; }
  const std::string& descriptor() const override { return descriptor_; }
  // Registered memory is reachable only through its keys; there is no name to unlink.
  void seal() override {}
  // The local descriptor (fi_mr_desc) for writes posted on `rail`; null where not required.
  void* desc(size_t rail) const { return descs_[rail]; }

 private:
  FabricLocalRegion(std::vector<std::shared_ptr<Rail>> rails, std::byte* data, size_t size,
                    bool owned);
  // Registers [data_, +size_) with every rail and builds the descriptor.
  Status register_with_rails();

  std::vector<std::shared_ptr<Rail>> rails_;  // keep the domains open until the MRs close
  std::byte* data_;
  size_t size_;
  bool owned_;  // mapped by create(), unmapped by the destructor; wrap()'s memory is the caller's
  std::vector<fid_mr*> mrs_;
  std::vector<void*> descs_;
  std::string descriptor_;
};

// A peer's endpoints as inserted into our rails' AVs: addr[our rail][their rail]. Removed from
// the AVs when the last region or peer object using them goes, so AVs do not grow per client;
// on shm, only once the peer's process has exited (see Rail::kept).
struct PeerAddresses {
  std::vector<std::shared_ptr<Rail>> rails;
  std::vector<std::vector<fi_addr_t>> addr;
  // shm only: the process behind each of the peer's rails (0 where unknown). libfabric 1.17's
  // shm takes a spinlock inside the *target's* shared memory to post a write, so a target killed
  // while holding it makes every later write to it spin forever. Writers check the process is
  // alive first (see alive()), which leaves only a window of microseconds.
  std::vector<pid_t> pids;
  // A pidfd per entry of `pids` (-1 where none): readable once the process has exited, so the
  // check on every write is one poll() instead of reading /proc (which cost a small answer as
  // much as the answer itself).
  std::vector<int> pidfds;
  mutable std::atomic<bool> dead{false};  // sticky once seen
  // False once the peer's process on `their_rail` has exited (or is a zombie).
  bool alive(size_t their_rail) const;
  PeerAddresses() = default;
  PeerAddresses(const PeerAddresses&) = delete;
  PeerAddresses& operator=(const PeerAddresses&) = delete;
  ~PeerAddresses();
};

// Memory a peer registered. Thread-safe (immutable).
class FabricRemoteRegion final : public RemoteRegion {
 public:
  FabricRemoteRegion(std::shared_ptr<const PeerAddresses> peer, uint64_t base, uint64_t size,
                     bool virt, std::vector<uint64_t> keys)
      : peer_(std::move(peer)), base_(base), size_(size), virt_(virt), keys_(std::move(keys)) {}
  size_t size() const override { return size_; }

  // Where piece number `k` of a write goes: the peer's rail, its fi_addr on `our_rail`, its key.
  size_t their_rail(uint64_t k) const { return k % keys_.size(); }
  fi_addr_t addr(size_t our_rail, size_t their_rail) const {
    const auto& row = peer_->addr[our_rail];
    return row[their_rail % row.size()];
  }
  uint64_t key(size_t their_rail) const { return keys_[their_rail]; }
  bool peer_alive(size_t their_rail) const { return peer_->alive(their_rail); }
  // The one place remote addresses are computed, per the owner's mr_mode.
  uint64_t remote_address(uint64_t offset) const { return virt_ ? base_ + offset : offset; }

 private:
  std::shared_ptr<const PeerAddresses> peer_;
  uint64_t base_, size_;
  bool virt_;
  std::vector<uint64_t> keys_;
};

// A connected peer: its addresses in our AVs. Thread-safe.
class FabricPeer final : public Peer {
 public:
  explicit FabricPeer(std::shared_ptr<const PeerAddresses> addresses)
      : addresses_(std::move(addresses)) {}
  // INVALID_ARGUMENT for a malformed descriptor.
  Result<std::shared_ptr<RemoteRegion>> attach(std::string_view descriptor) override;
  const std::shared_ptr<const PeerAddresses>& addresses() const { return addresses_; }

 private:
  std::shared_ptr<const PeerAddresses> addresses_;
};

// Our rails' addresses, framed as above.
std::string encode_address(const std::vector<std::shared_ptr<Rail>>& rails);

// Parses a peer's framed address and inserts each of its rails into each of our rails' AVs.
// INVALID_ARGUMENT for a malformed address or one of another provider's format.
Result<std::shared_ptr<const PeerAddresses>> insert_peer(
    const std::vector<std::shared_ptr<Rail>>& rails, std::string_view address);

}  // namespace kvrdma::transport::fabric
