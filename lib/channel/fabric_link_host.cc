// The server end of the fabric link (fabric_link.h has the protocol). The transport's progress
// thread receives every request message and files it in its link's inbox (newest request per
// slot); the channel thread take()s from the inboxes and sleeps on the host between bursts.
//
// Locking: Registry::mu (the link table) before an Inbox's mu; Registry::sleep_mu alone.
#include <fmt/format.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "channel/codec.h"
#include "channel/fabric_link.h"
#include "channel/fabric_link_wire.h"
#include "channel/mock_link.h"
#include "common/logging.h"

namespace kvrdma::channel {
namespace {

using namespace fabric_wire;

// An answer not handed to the provider by then is dropped (the client's wait times out).
constexpr auto kWriteTimeout = std::chrono::seconds(5);

bool number(std::string_view s, int base, uint64_t* v) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v, base);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

// Requests received for one link and not taken yet: the newest per slot.
struct Inbox {
  uint32_t id = 0;
  uint64_t secret = 0;
  uint32_t slots = 0;
  size_t slot_bytes = 0;
  std::mutex mu;
  std::vector<std::byte> bytes;  // slots x slot_bytes; guarded by mu
  struct Entry {
    uint64_t generation = 0;
    uint32_t length = 0;
    bool full = false;
  };
  std::vector<Entry> entries;      // guarded by mu
  std::atomic<uint32_t> count{0};  // full entries, read without the lock by take()
};

// What the host, its links and the transport's message handler share.
struct Registry {
  std::mutex mu;
  std::unordered_map<uint32_t, std::shared_ptr<Inbox>> links;  // guarded by mu
  uint32_t next_id = 1;                                        // guarded by mu
  std::mt19937_64 rng{std::random_device{}()};                 // guarded by mu
  std::atomic<uint64_t> dropped{0};  // messages refused (malformed, unknown link, bad secret)

  std::atomic<bool> need_wakeup{false};
  std::mutex sleep_mu;
  std::condition_variable sleep_cv;
  bool rung = false;  // guarded by sleep_mu

  void ring() {
    {
      std::lock_guard lock(sleep_mu);
      rung = true;
    }
    sleep_cv.notify_all();
  }

  // Progress thread: one message, untrusted.
  void on_message(std::span<const std::byte> m) {
    MessageHeader h;
    if (m.size() < sizeof h) {
      dropped.fetch_add(1);
      return;
    }
    std::memcpy(&h, m.data(), sizeof h);
    const size_t len = m.size() - sizeof h;
    std::shared_ptr<Inbox> inbox;
    {
      std::lock_guard lock(mu);
      auto it = links.find(h.link);
      if (it != links.end()) inbox = it->second;
    }
    if (h.magic != kMagic || !inbox || h.secret != inbox->secret || h.slot >= inbox->slots ||
        len > inbox->slot_bytes) {
      dropped.fetch_add(1);
      return;
    }
    {
      std::lock_guard lock(inbox->mu);
      Inbox::Entry& e = inbox->entries[h.slot];
      std::memcpy(inbox->bytes.data() + size_t{h.slot} * inbox->slot_bytes, m.data() + sizeof h,
                  len);
      if (!e.full) inbox->count.fetch_add(1);
      e = Inbox::Entry{h.generation, static_cast<uint32_t>(len), true};
    }
    if (need_wakeup.load()) ring();
  }
};

class FabricServerLink final : public ServerLink {
 public:
  FabricServerLink(std::shared_ptr<Registry> registry, std::shared_ptr<Inbox> inbox,
                   transport::Transport& transport, std::shared_ptr<transport::RemoteRegion> dst,
                   std::shared_ptr<transport::LocalRegion> answers, uint32_t client_index,
                   DataLayout layout)
      : registry_(std::move(registry)),
        inbox_(std::move(inbox)),
        transport_(transport),
        dst_(std::move(dst)),
        answers_(std::move(answers)),
        client_index_(client_index),
        layout_(layout),
        copy_(inbox_->slot_bytes) {}

  ~FabricServerLink() override {
    std::lock_guard lock(registry_->mu);
    registry_->links.erase(inbox_->id);
  }

  uint32_t slot_count() const override { return inbox_->slots; }
  size_t slot_bytes() const override { return inbox_->slot_bytes; }

  size_t take(size_t max, const std::function<void(const IncomingRequest&)>& fn) override {
    Inbox& in = *inbox_;
    // Nothing filed: drive the endpoint on this (polling) thread, which files what arrived. Found
    // nothing either: let a thread that needs this core run first (on 2 vCPUs the client's
    // caller and the progress threads compete with the polling channel thread; a hard spin there
    // cut 16-in-flight round trips over tcp from ~47k/s to ~15k/s, fabric_link_bench).
    if (in.count.load() == 0 && transport_.messages()->progress() == 0) std::this_thread::yield();
    size_t n = 0;
    for (uint32_t k = 0; k < in.slots && n < max && in.count.load() > 0; ++k) {
      const uint32_t i = (next_ + k) % in.slots;  // round robin: every slot gets its turn
      IncomingRequest req;
      {
        std::lock_guard lock(in.mu);
        Inbox::Entry& e = in.entries[i];
        if (!e.full) continue;
        e.full = false;
        in.count.fetch_sub(1);
        std::memcpy(copy_.data(), in.bytes.data() + size_t{i} * in.slot_bytes, e.length);
        req = IncomingRequest{i, e.generation, std::span<const std::byte>(copy_.data(), e.length)};
      }
      ++n;
      fn(req);
    }
    next_ = (next_ + 1) % in.slots;
    return n;
  }

  Status complete(uint32_t slot, uint64_t generation,
                  std::span<const std::byte> response) override {
    if (slot >= inbox_->slots || response.size() > inbox_->slot_bytes) {
      return Status(Code::kInvalidArgument,
                    fmt::format("channel: completion for slot {} of {} bytes (slots {}, slot "
                                "size {})",
                                slot, response.size(), inbox_->slots, inbox_->slot_bytes));
    }
    const size_t offset = size_t{slot} * (sizeof(CompletionHeader) + inbox_->slot_bytes);
    CompletionHeader h{generation, static_cast<uint32_t>(response.size()), 0};
    std::byte* area = answers_->data() + offset;
    std::memcpy(area, &h, sizeof h);
    if (!response.empty()) std::memcpy(area + sizeof h, response.data(), response.size());
    // The completion may run inline (injected, or refused at once) or later on the progress
    // thread; `outcome` tells which, and keeps the answer area alive until then.
    struct Outcome {
      std::shared_ptr<transport::LocalRegion> answers;
      std::atomic<bool> ran{false};
      Status status;
    };
    auto outcome = std::make_shared<Outcome>();
    outcome->answers = answers_;
    transport_.messages()
        ->write_with_data(*answers_, offset, dst_, offset, sizeof h + response.size(),
                          layout_.pack(client_index_, slot, generation),
                          Clock::now() + kWriteTimeout, [outcome, slot](Status s) {
                            if (!s.is_ok()) {
                              KVRDMA_LOG_DEBUG("channel: completion of slot {} not delivered: {}",
                                               slot, s.message());
                            }
                            outcome->status = std::move(s);
                            outcome->ran.store(true, std::memory_order_release);
                            outcome->answers.reset();
                          });
    if (outcome->ran.load(std::memory_order_acquire) && !outcome->status.is_ok()) {
      return Status(Code::kUnavailable, fmt::format("channel: completion not delivered: {}",
                                                    outcome->status.message()));
    }
    return Status::ok();
  }

 private:
  std::shared_ptr<Registry> registry_;
  std::shared_ptr<Inbox> inbox_;
  transport::Transport& transport_;
  std::shared_ptr<transport::RemoteRegion> dst_;     // the client's completion area
  std::shared_ptr<transport::LocalRegion> answers_;  // ours, written then sent from
  const uint32_t client_index_;
  const DataLayout layout_;
  std::vector<std::byte> copy_;  // the request being served (take() only)
  uint32_t next_ = 0;
};

class FabricLinkHost final : public LinkHost {
 public:
  FabricLinkHost(transport::Transport& transport, std::shared_ptr<Registry> registry,
                 DataLayout layout)
      : transport_(transport), registry_(std::move(registry)), layout_(layout) {}

  Result<std::unique_ptr<ServerLink>> open(std::string_view offer, std::string* accept) override {
    auto w = words(offer, 6);
    uint64_t slots = 0, slot_bytes = 0, index = 0;
    std::optional<std::string> address, descriptor;
    if (!w || !number((*w)[1], 10, &slots) || !number((*w)[2], 10, &slot_bytes) ||
        !number((*w)[3], 10, &index) || !(address = from_hex((*w)[4])) ||
        !(descriptor = from_hex((*w)[5]))) {
      return Status(Code::kInvalidArgument, "channel: malformed fabric link offer");
    }
    uint32_t max_slots = std::min<uint32_t>(kMaxSlots, layout_.max_slots());
    if (slots == 0 || slots > max_slots || slot_bytes < kMinSlotBytes ||
        slot_bytes > kMaxFabricSlotBytes || slot_bytes % 8 != 0) {
      return Status(Code::kResourceExhausted,
                    fmt::format("channel: offer of {} slots of {} bytes is outside 1..{} slots "
                                "of {}..{} bytes (a multiple of 8)",
                                slots, slot_bytes, max_slots, kMinSlotBytes, kMaxFabricSlotBytes));
    }
    if (index >= layout_.max_links()) {
      return Status(Code::kInvalidArgument,
                    fmt::format("channel: link index {} is beyond {}", index, layout_.max_links()));
    }
    const size_t area = slots * (sizeof(CompletionHeader) + slot_bytes);
    auto peer = transport_.connect(*address);
    if (!peer) return peer.status().with_context("channel: reaching the client's endpoint");
    auto dst = (*peer)->attach(*descriptor);
    if (!dst) return dst.status().with_context("channel: the client's completion area");
    if ((*dst)->size() < area) {
      return Status(Code::kInvalidArgument,
                    fmt::format("channel: completion area of {} bytes is smaller than {} slots "
                                "need ({} bytes)",
                                (*dst)->size(), slots, area));
    }
    auto answers = transport_.allocate(area);
    if (!answers) return answers.status().with_context("channel: answer area");
    auto inbox = std::make_shared<Inbox>();
    inbox->slots = static_cast<uint32_t>(slots);
    inbox->slot_bytes = slot_bytes;
    inbox->bytes.resize(slots * slot_bytes);
    inbox->entries.resize(slots);
    {
      std::lock_guard lock(registry_->mu);
      do {
        inbox->id = registry_->next_id++;
      } while (inbox->id == 0 || registry_->links.count(inbox->id));
      inbox->secret = registry_->rng();
      registry_->links.emplace(inbox->id, inbox);
    }
    *accept =
        fmt::format("{} {} {:x} {}", kTag, inbox->id, inbox->secret, to_hex(transport_.address()));
    return std::unique_ptr<ServerLink>(
        std::make_unique<FabricServerLink>(registry_, std::move(inbox), transport_, std::move(*dst),
                                           std::shared_ptr<transport::LocalRegion>(
                                               std::move(*answers)),
                                           static_cast<uint32_t>(index), layout_));
  }

  void prepare_sleep() override { registry_->need_wakeup.store(true); }
  void cancel_sleep() override { registry_->need_wakeup.store(false); }
  void sleep(Clock::time_point deadline) override {
    std::unique_lock lock(registry_->sleep_mu);
    registry_->sleep_cv.wait_until(lock, deadline, [&] { return registry_->rung; });
    registry_->rung = false;
    registry_->need_wakeup.store(false);
  }
  void wake() override { registry_->ring(); }

 private:
  transport::Transport& transport_;
  std::shared_ptr<Registry> registry_;
  const DataLayout layout_;
};

}  // namespace

bool fabric_link_allowed(transport::Transport& transport) {
  return transport.messages() != nullptr && transport.kind() != "fabric/shm";
}

Result<std::unique_ptr<LinkHost>> make_fabric_link_host(transport::Transport& transport) {
  transport::Messages* messages = transport.messages();
  if (messages == nullptr) {
    return Status(Code::kFailedPrecondition,
                  fmt::format("channel: transport {} has no messages", transport.kind()));
  }
  auto layout = DataLayout::for_bytes(messages->data_bytes());
  if (!layout) {
    return Status(Code::kFailedPrecondition,
                  fmt::format("channel: {} carries {} bytes of CQ data; the link needs 4",
                              transport.kind(), messages->data_bytes()));
  }
  auto registry = std::make_shared<Registry>();
  KVRDMA_RETURN_IF_ERROR(
      messages->listen(sizeof(MessageHeader) + kMaxFabricSlotBytes,
                       [registry](std::span<const std::byte> m) { registry->on_message(m); }));
  return std::unique_ptr<LinkHost>(
      std::make_unique<FabricLinkHost>(transport, std::move(registry), *layout));
}

}  // namespace kvrdma::channel
