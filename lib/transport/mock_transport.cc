#include "transport/mock_transport.h"

#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "memory/memory_pool.h"
#include "transport/shm_object.h"

namespace kvrdma::transport {
namespace {

constexpr std::string_view kDescriptorTag = "kvrdma-mock-v1";
constexpr std::string_view kAddressTag = "kvrdma-mock:";
constexpr size_t kMaxDescriptorBytes = 128;  // tag + 36-byte name + 20 digits, with room to spare
constexpr size_t kMaxPidDigits = 10;

bool all_digits(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return !s.empty();
}

// Peer-supplied bytes made safe to quote in a message: printable ASCII, at most 40 characters.
std::string quoted(std::string_view bytes) {
  std::string out;
  for (char c : bytes.substr(0, 40)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (bytes.size() > 40) out += "...";
  return out;
}

std::vector<std::string_view> split_spaces(std::string_view s) {
  std::vector<std::string_view> fields;
  for (size_t start = 0;;) {
    size_t end = s.find(' ', start);
    fields.push_back(s.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return fields;
    start = end + 1;
  }
}

struct Descriptor {
  std::string name;
  uint64_t length = 0;
};

// "<tag> <name> <length>", single spaces, nothing else. The name is checked by the caller, so a
// well-formed descriptor naming a foreign object gets PERMISSION_DENIED rather than this error.
Result<Descriptor> parse_descriptor(std::string_view text) {
  auto malformed = [&](std::string_view why) {
    return Status(Code::kInvalidArgument,
                  fmt::format("malformed mock memory descriptor '{}' ({}); client and server must "
                              "both run --mock true",
                              quoted(text), why));
  };
  if (text.size() > kMaxDescriptorBytes) return malformed("too long");
  std::vector<std::string_view> f = split_spaces(text);
  if (f.size() != 3) return malformed("expected 3 fields");
  if (f[0] != kDescriptorTag) return malformed("unknown format tag");
  Descriptor d;
  d.name = std::string(f[1]);
  if (!all_digits(f[2])) return malformed("length is not a decimal number");
  auto [end, ec] = std::from_chars(f[2].data(), f[2].data() + f[2].size(), d.length);
  if (ec != std::errc() || end != f[2].data() + f[2].size()) return malformed("length overflows");
  if (d.length == 0 || d.length % memory::kPageSize != 0) {
    return malformed("length is not a positive multiple of the page size");
  }
  return d;
}

class MockLocalRegion final : public LocalRegion {
 public:
  explicit MockLocalRegion(shm::OwnedObject object)
      : descriptor_(fmt::format("{} {} {}", kDescriptorTag, object.name(), object.size())),
        object_(std::move(object)) {}

  std::byte* data() const override { return object_.data(); }
  size_t size() const override { return object_.size(); }
  const std::string& descriptor() const override { return descriptor_; }
  void seal() override {
    std::lock_guard lock(seal_mu_);
    object_.unlink();
  }

 private:
  const std::string descriptor_;
  std::mutex seal_mu_;       // serialises seal() calls from several threads
  shm::OwnedObject object_;  // its name is guarded by seal_mu_; data/size immutable
};

class MockRemoteRegion final : public RemoteRegion {
 public:
  explicit MockRemoteRegion(shm::Mapping map) : map_(std::move(map)) {}
  size_t size() const override { return map_.size(); }
  std::byte* data() const { return map_.data(); }

 private:
  shm::Mapping map_;
};

class MockPeer final : public Peer {
 public:
  Result<std::shared_ptr<RemoteRegion>> attach(std::string_view descriptor) override {
    auto d = parse_descriptor(descriptor);
    if (!d) return d.status();
    if (!shm::is_object_name(d->name)) {
      return Status(Code::kPermissionDenied,
                    fmt::format("memory descriptor names '{}', which is not a kvrdma shared-memory "
                                "object; refusing to map it",
                                quoted(d->name)));
    }
    auto map = shm::open_object(d->name, d->length);
    if (!map) return map.status();
    return std::shared_ptr<RemoteRegion>(std::make_shared<MockRemoteRegion>(std::move(*map)));
  }
};

class MockTransport final : public Transport {
 public:
  std::string kind() const override { return "mock"; }
  std::string description() const override { return "mock (memcpy through shared memory)"; }
  std::string address() const override { return fmt::format("{}{}", kAddressTag, getpid()); }

  Result<std::unique_ptr<LocalRegion>> allocate(size_t len) override {
    if (len == 0) return Status(Code::kInvalidArgument, "cannot register 0 bytes");
    if (len > SIZE_MAX - (memory::kPageSize - 1)) {
      return Status(Code::kResourceExhausted, fmt::format("cannot register {} bytes", len));
    }
    size_t size = (len + memory::kPageSize - 1) / memory::kPageSize * memory::kPageSize;
    auto object = shm::OwnedObject::create(size);
    if (!object) return object.status().with_context("registering memory for the mock transport");
    return std::unique_ptr<LocalRegion>(std::make_unique<MockLocalRegion>(std::move(*object)));
  }

  // A peer maps only the mock's own shared-memory objects, never another process's heap.
  Result<std::unique_ptr<LocalRegion>> register_memory(void*, size_t len, MemoryKind) override {
    return Status(Code::kFailedPrecondition,
                  fmt::format("the mock transport cannot register memory it did not allocate "
                              "({} bytes given); allocate the block with Client::allocate "
                              "(kvrdma_client_allocate) and use it as your own, or run over "
                              "libfabric (--mock false)",
                              len));
  }

  Result<std::shared_ptr<Peer>> connect(std::string_view peer_address) override {
    std::string_view pid = peer_address.substr(0, kAddressTag.size()) == kAddressTag
                               ? peer_address.substr(kAddressTag.size())
                               : std::string_view();
    if (!all_digits(pid) || pid.size() > kMaxPidDigits) {
      return Status(Code::kInvalidArgument,
                    fmt::format("peer address '{}' is not a mock transport address (client and "
                                "server must both run --mock true)",
                                quoted(peer_address)));
    }
    return std::shared_ptr<Peer>(std::make_shared<MockPeer>());
  }

  void write(const LocalRegion& src, size_t src_offset, std::shared_ptr<RemoteRegion> dst,
             size_t dst_offset, size_t len, Clock::time_point /*deadline*/,
             Completion done) override {
    auto* local = dynamic_cast<const MockLocalRegion*>(&src);
    auto* remote = dynamic_cast<MockRemoteRegion*>(dst.get());
    if (local == nullptr || remote == nullptr) {
      done(Status(Code::kInvalidArgument, "regions do not belong to the mock transport"));
      return;
    }
    // Written as subtractions so offsets near SIZE_MAX cannot wrap past the checks.
    if (src_offset > local->size() || len > local->size() - src_offset) {
      done(Status(Code::kInvalidArgument,
                  fmt::format("source range [{}, +{}) is outside the {}-byte local region",
                              src_offset, len, local->size())));
      return;
    }
    if (dst_offset > remote->size() || len > remote->size() - dst_offset) {
      done(Status(Code::kInvalidArgument,
                  fmt::format("destination range [{}, +{}) is outside the {}-byte remote region",
                              dst_offset, len, remote->size())));
      return;
    }
    if (len > 0) std::memcpy(remote->data() + dst_offset, local->data() + src_offset, len);
    done(Status());
  }

  // A memcpy by the writer needs nothing from the target.
  WriteExpectation expect_writes() override { return {}; }
};

}  // namespace

std::unique_ptr<Transport> make_mock_transport() { return std::make_unique<MockTransport>(); }

size_t remove_stale_shm_objects() { return shm::remove_stale_objects(); }

}  // namespace kvrdma::transport
