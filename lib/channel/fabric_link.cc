// The client end of the fabric link (fabric_link.h has the protocol; the server end is in
// fabric_link_host.cc).
#include "channel/fabric_link.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "channel/codec.h"
#include "channel/fabric_link_wire.h"
#include "channel/mock_link.h"
#include "common/logging.h"

namespace kvrdma::channel {
namespace {

using namespace fabric_wire;

// The leader among a link's waiting callers spins (driving the endpoint itself) for a budget
// learned from what spinning caught (see learn()), within these bounds, before it sleeps: over
// tcp a caught answer costs ~10-30 us, a sleep and a wake-up ~50-100 us more on 2 vCPUs.
constexpr auto kMinSpin = std::chrono::microseconds(20);
constexpr auto kMaxSpin = std::chrono::microseconds(200);
// A sleeping caller re-checks at least this often.
constexpr auto kSleepCap = std::chrono::milliseconds(100);
// A request not handed to the provider by then fails its slot.
constexpr auto kSendTimeout = std::chrono::seconds(5);

// Callers of one link that spin at once (the leader); the others sleep at once and are woken by
// whoever drives the endpoint (on 2 vCPUs, 16 spinning callers starved the server: 7k GETs/s).
constexpr int kMaxSpinners = 1;

// One slot as the client sees it.
struct Slot {
  std::atomic<uint64_t> posted{0};  // generation of the request in flight
  std::atomic<uint64_t> done{0};    // generation whose completion arrived
  std::atomic<uint64_t> failed{0};  // generation whose send failed
  std::atomic<int> sleeping{0};     // callers asleep on cv
  std::condition_variable cv;       // with ClientState::mu
  std::atomic<Clock::rep> sent{0};  // when the request in flight was posted
};

// What the link shares with its sends' completions and with the transport's data handler.
struct ClientState {
  uint32_t slots = 0;
  size_t slot_bytes = 0;
  std::unique_ptr<transport::LocalRegion> requests;     // per slot: header + request
  std::unique_ptr<transport::LocalRegion> completions;  // per slot: header + completion
  std::unique_ptr<Slot[]> slot;
  std::mutex mu;
  std::atomic<int> spinners{0};               // callers spinning in wait() now
  std::atomic<int64_t> round_trip_ns{20000};  // moving average of round trips caught spinning
  std::atomic<int64_t> spin_ns{20000};        // the leader's spin budget now (0: none)
  std::atomic<uint32_t> waits{0};             // leader waits so far (for the probe)

  size_t request_offset(uint32_t i) const { return i * (sizeof(MessageHeader) + slot_bytes); }
  size_t completion_offset(uint32_t i) const { return i * (sizeof(CompletionHeader) + slot_bytes); }
  CompletionHeader& completion_header(uint32_t i) const {
    return *reinterpret_cast<CompletionHeader*>(completions->data() + completion_offset(i));
  }

  // Wakes slot i's sleeping caller, if any (after done or failed changed).
  void wake(Slot& s) {
    if (s.sleeping.load() == 0) return;
    { std::lock_guard lock(mu); }
    s.cv.notify_all();
  }

  // A completion for `slot` arrived (whichever thread polled). Its bytes are visible now.
  void on_data(uint32_t i, uint64_t gen_low, const DataLayout& layout) {
    if (i >= slots) return;
    Slot& s = slot[i];
    uint64_t gen = std::atomic_ref(completion_header(i).generation).load(std::memory_order_acquire);
    // A stale completion (an abandoned request's, or a scribbled one) is ignored.
    if (gen != s.posted.load() || (gen & layout.gen_mask()) != gen_low) return;
    s.done.store(gen, std::memory_order_release);
    wake(s);
  }
};

// Routes the transport's completions to the client links of that transport, by link index.
// One per transport; the transport's data handler keeps it alive.
struct ClientDispatch {
  DataLayout layout;
  std::mutex mu;
  std::vector<std::shared_ptr<ClientState>> links;  // by index; guarded by mu

  void deliver(uint64_t data) {
    uint32_t link = 0, slot = 0;
    uint64_t gen_low = 0;
    layout.unpack(data, &link, &slot, &gen_low);
    std::lock_guard lock(mu);
    if (link < links.size() && links[link]) links[link]->on_data(slot, gen_low, layout);
  }
};

// The dispatch of `messages`, created (and installed as its data handler) on first use.
std::shared_ptr<ClientDispatch> dispatch_for(transport::Messages* messages,
                                             const DataLayout& layout) {
  static std::mutex mu;
  static std::map<transport::Messages*, std::weak_ptr<ClientDispatch>> all;
  std::lock_guard lock(mu);
  if (auto d = all[messages].lock()) return d;
  auto d = std::make_shared<ClientDispatch>();
  d->layout = layout;
  messages->on_remote_data([d](uint64_t data) { d->deliver(data); });
  all[messages] = d;
  return d;
}

class FabricClientLink final : public ClientLink {
 public:
  FabricClientLink(transport::Transport& transport, std::shared_ptr<ClientState> state,
                   std::shared_ptr<ClientDispatch> dispatch, uint32_t index)
      : transport_(transport),
        messages_(*transport.messages()),
        state_(std::move(state)),
        dispatch_(std::move(dispatch)),
        index_(index) {}

  ~FabricClientLink() override {
    std::lock_guard lock(dispatch_->mu);
    dispatch_->links[index_].reset();
  }

  uint32_t slot_count() const override { return state_->slots; }
  size_t slot_bytes() const override { return state_->slot_bytes; }

  std::string offer() const override {
    return fmt::format("{} {} {} {} {} {}", kTag, state_->slots, state_->slot_bytes, index_,
                       to_hex(transport_.address()), to_hex(state_->completions->descriptor()));
  }

  Status accept(std::string_view server_accept) override {
    auto w = words(server_accept, 4);
    uint64_t id = 0, secret = 0;
    std::optional<std::string> address;
    if (!w || !number((*w)[1], 10, &id) || id > UINT32_MAX || !number((*w)[2], 16, &secret) ||
        !(address = from_hex((*w)[3]))) {
      return Status(Code::kInvalidArgument,
                    "channel: malformed fabric link accept from the server");
    }
    auto peer = transport_.connect(*address);
    if (!peer) return peer.status().with_context("channel: reaching the server's endpoint");
    peer_ = std::move(*peer);
    id_ = static_cast<uint32_t>(id);
    secret_ = secret;
    return Status::ok();
  }

  Status post(uint32_t slot, uint64_t generation, std::span<const std::byte> request) override {
    ClientState& st = *state_;
    if (slot >= st.slots || request.size() > st.slot_bytes || peer_ == nullptr) {
      return Status(Code::kInvalidArgument,
                    fmt::format("channel: post to slot {} of {} bytes (slots {}, slot size {}{})",
                                slot, request.size(), st.slots, st.slot_bytes,
                                peer_ ? "" : ", link not accepted yet"));
    }
    Slot& s = st.slot[slot];
    s.posted.store(generation);
    s.sent.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    MessageHeader h{kMagic, id_, secret_, slot, 0, generation};
    std::byte* area = st.requests->data() + st.request_offset(slot);
    std::memcpy(area, &h, sizeof h);
    if (!request.empty()) std::memcpy(area + sizeof h, request.data(), request.size());
    messages_.send(*peer_, *st.requests, st.request_offset(slot), sizeof h + request.size(),
                   Clock::now() + kSendTimeout, [state = state_, slot, generation](Status done) {
                     if (done.is_ok()) return;
                     KVRDMA_LOG_DEBUG("channel: request to slot {} not sent: {}", slot,
                                      done.message());
                     Slot& failed = state->slot[slot];
                     failed.failed.store(generation);
                     state->wake(failed);
                   });
    if (s.failed.load() == generation) {
      return Status(Code::kUnavailable, "channel: the request could not be sent to the server");
    }
    return Status::ok();
  }

  // Each post() sent its message already; the server's progress thread sees it on arrival.
  void ring() override {}

  std::span<const std::byte> poll(uint32_t slot, uint64_t generation) override {
    ClientState& st = *state_;
    if (slot >= st.slots) return {};
    // Not there yet: drive the endpoint here rather than wait for the progress thread.
    if (st.slot[slot].done.load(std::memory_order_acquire) != generation) messages_.progress();
    if (st.slot[slot].done.load(std::memory_order_acquire) != generation) return {};
    uint32_t n = st.completion_header(slot).length;
    if (n > st.slot_bytes) return {};  // the server wrote nonsense: never read past the area
    return {st.completions->data() + st.completion_offset(slot) + sizeof(CompletionHeader), n};
  }

  Status wait(uint32_t slot, uint64_t generation, Clock::time_point deadline) override {
    ClientState& st = *state_;
    if (slot >= st.slots) {
      return Status(Code::kInvalidArgument, fmt::format("channel: wait on slot {}", slot));
    }
    Slot& s = st.slot[slot];
    auto done = [&] { return s.done.load(std::memory_order_acquire) == generation; };
    auto failed = [&] { return s.failed.load() == generation; };
    const auto sent = Clock::time_point(Clock::duration(s.sent.load(std::memory_order_relaxed)));
    bool spinning = st.spinners.fetch_add(1) < kMaxSpinners;
    if (!spinning) st.spinners.fetch_sub(1);
    const bool leader = spinning;
    const auto spin_end = sent + (leader ? spin_budget() : Clock::duration(0));
    bool missed = false;  // the leader's spin ended before the answer came
    bool useful = false;  // the leader's spin read completions
    while (!done() && !failed()) {
      auto now = Clock::now();
      if (now >= deadline) {
        if (spinning) st.spinners.fetch_sub(1);
        return Status(Code::kDeadlineExceeded,
                      "channel: no answer from the server before the deadline");
      }
      if (spinning && now < spin_end) {
        // Manual progress: the waiter drives it while it spins, and lets a thread that needs
        // this core (the server's, on a small machine) run between polls.
        if (messages_.progress() > 0) {
          useful = true;  // answers for other callers count: the spin delivers them
        } else {
          std::this_thread::yield();
        }
        continue;
      }
      messages_.progress();
      if (done() || failed()) break;
      missed = true;
      if (spinning) {
        st.spinners.fetch_sub(1);
        spinning = false;
      }
      // Asleep, the progress thread must poll for us where the provider gives it no
      // descriptor to wake on.
      transport::WriteExpectation expecting = transport_.expect_writes();
      std::unique_lock lock(st.mu);
      s.sleeping.fetch_add(1);
      s.cv.wait_until(lock, std::min(deadline, now + kSleepCap),
                      [&] { return done() || failed(); });
      s.sleeping.fetch_sub(1);
    }
    if (spinning) st.spinners.fetch_sub(1);
    if (!done()) return Status(Code::kUnavailable, "channel: the request could not be sent");
    if (leader) learn(!missed || useful, Clock::now() - sent);
    return Status::ok();
  }

 private:
  // How long the leader spins after its request left, before it sleeps.
  // Every 32nd wait spins at least kMinSpin, so a budget that fell to 0 on a busy machine
  // comes back when the machine quiets.
  Clock::duration spin_budget() const {
    auto budget = std::chrono::nanoseconds(state_->spin_ns.load(std::memory_order_relaxed));
    if (state_->waits.fetch_add(1, std::memory_order_relaxed) % 32 == 0) {
      budget = std::max<std::chrono::nanoseconds>(budget, kMinSpin);
    }
    return budget;
  }

  // Spinning pays when it catches answers: after a catch the budget is twice the recent caught
  // round trip (kMinSpin..kMaxSpin); after a miss (the answer came only once the leader slept)
  // it halves, down to none. On a quiet machine a 64-byte GET is caught at ~10-15 us; on a busy
  // one the spinning leader holds the core the server needs and misses, and then sleeping at
  // once is faster.
  void learn(bool caught, Clock::duration rtt) {
    ClientState& st = *state_;
    if (caught) {
      const int64_t avg = st.round_trip_ns.load(std::memory_order_relaxed);
      const int64_t now = avg + (rtt.count() - avg) / 8;
      st.round_trip_ns.store(now, std::memory_order_relaxed);
      st.spin_ns.store(std::clamp<int64_t>(2 * now, std::chrono::nanoseconds(kMinSpin).count(),
                                           std::chrono::nanoseconds(kMaxSpin).count()),
                       std::memory_order_relaxed);
      return;
    }
    const int64_t half = st.spin_ns.load(std::memory_order_relaxed) / 2;
    st.spin_ns.store(half < 5000 ? 0 : half, std::memory_order_relaxed);
  }

  static bool number(std::string_view s, int base, uint64_t* v) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v, base);
    return !s.empty() && ec == std::errc() && end == s.data() + s.size();
  }

  transport::Transport& transport_;
  transport::Messages& messages_;
  std::shared_ptr<ClientState> state_;
  std::shared_ptr<ClientDispatch> dispatch_;
  const uint32_t index_;
  std::shared_ptr<transport::Peer> peer_;  // set once by accept()
  uint32_t id_ = 0;
  uint64_t secret_ = 0;
};

}  // namespace

bool is_fabric_offer(std::string_view offer) {
  return offer.size() > kTag.size() && offer.substr(0, kTag.size()) == kTag &&
         offer[kTag.size()] == ' ';
}

Result<std::unique_ptr<ClientLink>> make_fabric_client_link(transport::Transport& transport,
                                                            uint32_t slots, size_t slot_bytes) {
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
  uint32_t max_slots = std::min<uint32_t>(kMaxSlots, layout->max_slots());
  if (slots == 0 || slots > max_slots || slot_bytes < kMinSlotBytes ||
      slot_bytes > kMaxFabricSlotBytes || slot_bytes % 8 != 0) {
    return Status(Code::kInvalidArgument,
                  fmt::format("channel: {} slots of {} bytes is outside 1..{} slots of {}..{} "
                              "bytes (a multiple of 8)",
                              slots, slot_bytes, max_slots, kMinSlotBytes, kMaxFabricSlotBytes));
  }
  auto st = std::make_shared<ClientState>();
  st->slots = slots;
  st->slot_bytes = slot_bytes;
  st->slot = std::make_unique<Slot[]>(slots);
  auto requests = transport.allocate(slots * (sizeof(MessageHeader) + slot_bytes));
  if (!requests) return requests.status().with_context("channel: request area");
  auto completions = transport.allocate(slots * (sizeof(CompletionHeader) + slot_bytes));
  if (!completions) return completions.status().with_context("channel: completion area");
  st->requests = std::move(*requests);
  st->completions = std::move(*completions);
  auto dispatch = dispatch_for(messages, *layout);
  uint32_t index = 0;
  {
    std::lock_guard lock(dispatch->mu);
    auto& links = dispatch->links;
    while (index < links.size() && links[index]) ++index;
    if (index >= layout->max_links()) {
      return Status(Code::kResourceExhausted,
                    fmt::format("channel: {} links are open on this transport already; close one",
                                index));
    }
    if (index == links.size()) links.emplace_back();
    links[index] = st;
  }
  return std::unique_ptr<ClientLink>(
      std::make_unique<FabricClientLink>(transport, std::move(st), std::move(dispatch), index));
}

}  // namespace kvrdma::channel
