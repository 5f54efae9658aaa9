#include "channel/mock_link.h"

#include <fmt/format.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <charconv>
#include <climits>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "channel/codec.h"
#include "transport/shm_object.h"

namespace kvrdma::channel {
namespace {

constexpr std::string_view kTag = "kvrdma-chan-mock-v1";
constexpr uint32_t kNeedWakeup = 1u << 31;
constexpr size_t kPage = 4096;
constexpr size_t kControlBytes = 64;
// A client waiting for its completion spins this long before it sleeps on the slot's futex
// (waking a sleeping vCPU here costs ~25-35 us; a server at its poll answers in ~1-2 us).
constexpr auto kClientSpin = std::chrono::microseconds(20);
// Polls before a spinning caller starts yielding its core between polls (~1-2 us of polling).
constexpr uint32_t kSpinBeforeYield = 64;

// One slot's control line in the client's region. Written by both sides; only the fields each
// side owns are trusted by it, and the server checks every value it reads.
struct Control {
  uint64_t req_gen;    // client: the posted request's generation (release after the bytes)
  uint32_t req_len;    // client
  uint32_t waiting;    // client: 1 while it sleeps on done_word
  uint64_t done_gen;   // server: the completion's generation (release after the bytes)
  uint32_t done_len;   // server
  uint32_t done_word;  // server: +1 per completion; the client's futex word
  uint8_t pad[kControlBytes - 32];
};
static_assert(sizeof(Control) == kControlBytes);

template <typename T>
std::atomic_ref<T> at(T& v) {
  return std::atomic_ref<T>(v);
}

long futex(uint32_t* word, int op, uint32_t val, const timespec* timeout) {
  // Not FUTEX_PRIVATE: the word is shared between processes.
  return syscall(SYS_futex, word, op, val, timeout, nullptr, 0);
}

void futex_wait_until(uint32_t* word, uint32_t expected, Clock::time_point deadline) {
  auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  futex(word, FUTEX_WAIT, expected, &ts);
}

void futex_wake_all(uint32_t* word) { futex(word, FUTEX_WAKE, INT_MAX, nullptr); }

size_t round_pages(size_t n) { return (n + kPage - 1) / kPage * kPage; }

size_t region_bytes(uint32_t slots, size_t slot_bytes) {
  return round_pages(kPage + size_t{slots} * (kControlBytes + 2 * slot_bytes));
}

// Splits "tag a b c ..." into words; nullopt when the tag differs or the count is wrong.
std::optional<std::vector<std::string_view>> words(std::string_view s, size_t count) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    size_t sp = s.find(' ');
    out.push_back(s.substr(0, sp));
    if (sp == std::string_view::npos) break;
    s.remove_prefix(sp + 1);
  }
  if (out.size() != count || out[0] != kTag) return std::nullopt;
  return out;
}

bool number(std::string_view s, uint64_t* v) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && end == s.data() + s.size();
}

// The layout of a slot region, computed by each side from sizes it checked.
struct Layout {
  std::byte* base = nullptr;
  uint32_t slots = 0;
  size_t slot_bytes = 0;

  Control& control(uint32_t i) const {
    return *reinterpret_cast<Control*>(base + kPage + size_t{i} * kControlBytes);
  }
  std::byte* request(uint32_t i) const {
    return base + kPage + size_t{slots} * kControlBytes + size_t{i} * slot_bytes;
  }
  std::byte* completion(uint32_t i) const {
    return base + kPage + size_t{slots} * (kControlBytes + slot_bytes) + size_t{i} * slot_bytes;
  }
};

class MockClientLink final : public ClientLink {
 public:
  MockClientLink(transport::shm::OwnedObject region, uint32_t slots, size_t slot_bytes)
      : region_(std::move(region)), layout_{region_.data(), slots, slot_bytes} {}

  uint32_t slot_count() const override { return layout_.slots; }
  size_t slot_bytes() const override { return layout_.slot_bytes; }

  std::string offer() const override {
    return fmt::format("{} {} {} {} {}", kTag, region_.name(), region_.size(), layout_.slots,
                       layout_.slot_bytes);
  }

  Status accept(std::string_view server_accept) override {
    auto w = words(server_accept, 4);
    uint64_t size = 0, pid = 0;
    if (!w || !transport::shm::is_object_name((*w)[1]) || !number((*w)[2], &size) ||
        size != kPage || !number((*w)[3], &pid) || pid == 0 || pid > INT_MAX) {
      return Status(Code::kInvalidArgument,
                    fmt::format("channel: malformed accept '{}' from the server", server_accept));
    }
    auto bell = transport::shm::open_object(std::string((*w)[1]), size);
    if (!bell) return bell.status().with_context("channel: mapping the server's doorbell");
    bell_ = std::move(*bell);
    server_pid_ = static_cast<pid_t>(pid);
    region_.unlink();  // the server mapped it before it answered
    return Status::ok();
  }

  Status post(uint32_t slot, uint64_t generation, std::span<const std::byte> request) override {
    if (slot >= layout_.slots || request.size() > layout_.slot_bytes) {
      return Status(Code::kInvalidArgument,
                    fmt::format("channel: post to slot {} of {} bytes (slots {}, slot size {})",
                                slot, request.size(), layout_.slots, layout_.slot_bytes));
    }
    std::memcpy(layout_.request(slot), request.data(), request.size());
    Control& c = layout_.control(slot);
    at(c.req_len).store(static_cast<uint32_t>(request.size()), std::memory_order_relaxed);
    // seq_cst pairs with the server's fetch_or of NEED_WAKEUP then re-scan (see ring()).
    at(c.req_gen).store(generation, std::memory_order_seq_cst);
    return Status::ok();
  }

  void ring() override {
    if (bell_.data() == nullptr) return;
    uint32_t* word = reinterpret_cast<uint32_t*>(bell_.data());
    if ((at(*word).load(std::memory_order_seq_cst) & kNeedWakeup) == 0) return;
    // Clearing the bit changes the word, so a server between its check and its futex wait
    // returns at once; the wake covers one already asleep.
    at(*word).fetch_and(~kNeedWakeup, std::memory_order_seq_cst);
    futex_wake_all(word);
  }

  std::span<const std::byte> poll(uint32_t slot, uint64_t generation) override {
    if (slot >= layout_.slots) return {};
    Control& c = layout_.control(slot);
    if (at(c.done_gen).load(std::memory_order_acquire) != generation) return {};
    uint32_t n = at(c.done_len).load(std::memory_order_relaxed);
    if (n > layout_.slot_bytes) return {};
    return {layout_.completion(slot), n};
  }

  Status wait(uint32_t slot, uint64_t generation, Clock::time_point deadline) override {
    if (slot >= layout_.slots) {
      return Status(Code::kInvalidArgument, fmt::format("channel: wait on slot {}", slot));
    }
    Control& c = layout_.control(slot);
    auto done = [&] { return at(c.done_gen).load(std::memory_order_acquire) == generation; };
    const auto spin_end = Clock::now() + kClientSpin;
    for (uint32_t i = 0; !done(); ++i) {
      auto now = Clock::now();
      if (now >= deadline) {
        return Status(Code::kDeadlineExceeded,
                      "channel: no answer from the server before the deadline");
      }
      if (now < spin_end) {
        // Past the first microseconds the answer waits for the server's thread: give the core
        // away (to it, or to another caller, when they share this one) instead of burning it in
        // clock reads. With 16 callers on 2 vCPUs this took 64 B GETs from ~130k to ~380-530k/s.
        if (i >= kSpinBeforeYield) sched_yield();
        continue;
      }
      uint32_t w = at(c.done_word).load(std::memory_order_seq_cst);
      at(c.waiting).store(1, std::memory_order_seq_cst);
      if (!done()) futex_wait_until(&c.done_word, w, std::min(deadline, now + kSleepCap));
      at(c.waiting).store(0, std::memory_order_relaxed);
      if (!done() && !server_alive()) {
        return Status(Code::kUnavailable, "channel: the server process is gone");
      }
    }
    return Status::ok();
  }

 private:
  // A sleeping caller re-checks at least this often (a lost wake-up costs at most this, and a
  // dead server is noticed within it).
  static constexpr auto kSleepCap = std::chrono::milliseconds(50);

  // The server's pid came with its accept (over gRPC), not from the shared doorbell page, which
  // every client of the server may write.
  bool server_alive() const {
    return server_pid_ <= 0 || kill(server_pid_, 0) == 0 || errno != ESRCH;
  }

  transport::shm::OwnedObject region_;
  Layout layout_;
  transport::shm::Mapping bell_;
  pid_t server_pid_ = 0;
};

class MockServerLink final : public ServerLink {
 public:
  MockServerLink(transport::shm::Mapping map, uint32_t slots, size_t slot_bytes)
      : map_(std::move(map)),
        layout_{map_.data(), slots, slot_bytes},
        taken_(slots, 0),
        copy_(slot_bytes) {
    // Requests posted before the link opened are ignored: start from what the region holds.
    for (uint32_t i = 0; i < slots; ++i) {
      taken_[i] = at(layout_.control(i).req_gen).load(std::memory_order_acquire);
    }
  }

  uint32_t slot_count() const override { return layout_.slots; }
  size_t slot_bytes() const override { return layout_.slot_bytes; }

  size_t take(size_t max, const std::function<void(const IncomingRequest&)>& fn) override {
    size_t n = 0;
    const uint32_t slots = layout_.slots;
    for (uint32_t k = 0; k < slots && n < max; ++k) {
      const uint32_t i = (next_ + k) % slots;  // round robin: every slot gets its turn
      Control& c = layout_.control(i);
      const uint64_t gen = at(c.req_gen).load(std::memory_order_seq_cst);
      if (gen == taken_[i]) continue;
      taken_[i] = gen;
      const uint32_t len = at(c.req_len).load(std::memory_order_relaxed);
      if (len > layout_.slot_bytes) continue;  // the codec would refuse it anyway
      std::memcpy(copy_.data(), layout_.request(i), len);
      // Scribbled over while we copied: drop it; the newer request is taken on the next pass.
      std::atomic_thread_fence(std::memory_order_acquire);
      if (at(c.req_gen).load(std::memory_order_relaxed) != gen) continue;
      ++n;
      fn(IncomingRequest{i, gen, std::span<const std::byte>(copy_.data(), len)});
    }
    next_ = (next_ + 1) % slots;
    return n;
  }

  Status complete(uint32_t slot, uint64_t generation,
                  std::span<const std::byte> response) override {
    if (slot >= layout_.slots || response.size() > layout_.slot_bytes) {
      return Status(Code::kInvalidArgument,
                    fmt::format("channel: completion for slot {} of {} bytes (slots {}, slot "
                                "size {})",
                                slot, response.size(), layout_.slots, layout_.slot_bytes));
    }
    std::memcpy(layout_.completion(slot), response.data(), response.size());
    Control& c = layout_.control(slot);
    at(c.done_len).store(static_cast<uint32_t>(response.size()), std::memory_order_relaxed);
    at(c.done_gen).store(generation, std::memory_order_seq_cst);
    at(c.done_word).fetch_add(1, std::memory_order_seq_cst);
    if (at(c.waiting).load(std::memory_order_seq_cst) != 0) futex_wake_all(&c.done_word);
    return Status::ok();
  }

 private:
  transport::shm::Mapping map_;
  Layout layout_;
  std::vector<uint64_t> taken_;  // per slot: the last generation taken (our own copy)
  std::vector<std::byte> copy_;  // the request being served, copied out of the region
  uint32_t next_ = 0;
};

class MockLinkHost final : public LinkHost {
 public:
  explicit MockLinkHost(transport::shm::OwnedObject bell) : bell_(std::move(bell)) {}

  Result<std::unique_ptr<ServerLink>> open(std::string_view offer, std::string* accept) override {
    auto w = words(offer, 5);
    uint64_t size = 0, slots = 0, slot_bytes = 0;
    if (!w || !number((*w)[2], &size) || !number((*w)[3], &slots) ||
        !number((*w)[4], &slot_bytes)) {
      return Status(Code::kInvalidArgument, "channel: malformed mock link offer");
    }
    if (!transport::shm::is_object_name((*w)[1])) {
      return Status(Code::kPermissionDenied,
                    "channel: the offer names a shared-memory object the mock may not map");
    }
    if (slots == 0 || slots > kMaxSlots || slot_bytes < kMinSlotBytes ||
        slot_bytes > kMaxSlotBytes || slot_bytes % 8 != 0) {
      return Status(Code::kResourceExhausted,
                    fmt::format("channel: offer of {} slots of {} bytes is outside 1..{} slots "
                                "of {}..{} bytes (a multiple of 8)",
                                slots, slot_bytes, kMaxSlots, kMinSlotBytes, kMaxSlotBytes));
    }
    if (size != region_bytes(static_cast<uint32_t>(slots), slot_bytes)) {
      return Status(Code::kInvalidArgument,
                    fmt::format("channel: region of {} bytes does not match {} slots of {} bytes",
                                size, slots, slot_bytes));
    }
    auto map = transport::shm::open_object(std::string((*w)[1]), size);
    if (!map) return map.status().with_context("channel: mapping the client's slot region");
    *accept = fmt::format("{} {} {} {}", kTag, bell_.name(), bell_.size(), getpid());
    return std::unique_ptr<ServerLink>(
        std::make_unique<MockServerLink>(std::move(*map), static_cast<uint32_t>(slots),
                                         slot_bytes));
  }

  void prepare_sleep() override {
    armed_ = at(*word()).fetch_or(kNeedWakeup, std::memory_order_seq_cst) | kNeedWakeup;
  }
  void cancel_sleep() override { at(*word()).fetch_and(~kNeedWakeup, std::memory_order_seq_cst); }
  void sleep(Clock::time_point deadline) override {
    futex_wait_until(word(), armed_, deadline);
    at(*word()).fetch_and(~kNeedWakeup, std::memory_order_seq_cst);
  }
  void wake() override {
    at(*word()).fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(word());
  }

 private:
  uint32_t* word() { return reinterpret_cast<uint32_t*>(bell_.data()); }

  transport::shm::OwnedObject bell_;  // stays linked: clients map it at each Hello
  uint32_t armed_ = 0;                // only the one channel thread sleeps
};

}  // namespace

bool uses_shared_memory_link(std::string_view transport_kind) {
  return transport_kind == "mock" || transport_kind == "fabric/shm";
}

bool is_mock_offer(std::string_view offer) {
  return offer.substr(0, kTag.size() + 1) == std::string(kTag) + " ";
}

Result<std::unique_ptr<ClientLink>> make_mock_client_link(uint32_t slots, size_t slot_bytes) {
  if (slots == 0 || slots > kMaxSlots || slot_bytes < kMinSlotBytes || slot_bytes > kMaxSlotBytes ||
      slot_bytes % 8 != 0) {
    return Status(Code::kInvalidArgument,
                  fmt::format("channel: {} slots of {} bytes is outside 1..{} slots of {}..{} "
                              "bytes (a multiple of 8)",
                              slots, slot_bytes, kMaxSlots, kMinSlotBytes, kMaxSlotBytes));
  }
  auto region = transport::shm::OwnedObject::create(region_bytes(slots, slot_bytes));
  if (!region) return region.status().with_context("channel: slot region");
  return std::unique_ptr<ClientLink>(
      std::make_unique<MockClientLink>(std::move(*region), slots, slot_bytes));
}

Result<std::unique_ptr<LinkHost>> make_mock_link_host() {
  auto bell = transport::shm::OwnedObject::create(kPage);
  if (!bell) return bell.status().with_context("channel: doorbell page");
  return std::unique_ptr<LinkHost>(std::make_unique<MockLinkHost>(std::move(*bell)));
}

}  // namespace kvrdma::channel
