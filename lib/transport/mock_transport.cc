#include "transport/mock_transport.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <regex>
#include <utility>

#include "memory/memory_pool.h"

namespace kvrdma::transport {
namespace {

constexpr std::string_view kDescriptorTag = "kvrdma-mock-v1";
constexpr std::string_view kAddressTag = "kvrdma-mock:";

bool valid_object_name(std::string_view name) {
  static const std::regex kPattern("^/kvrdma-[0-9]{1,10}-[0-9a-f]{16}$");
  return std::regex_match(name.begin(), name.end(), kPattern);
}

std::string random_name() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ (counter++ * 0x9e3779b97f4a7c15ull);
  return fmt::format("/kvrdma-{}-{:016x}", getpid(), r);
}

Status errno_status(Code code, std::string_view what, std::string_view name) {
  return Status(code, fmt::format("{} '{}': {}", what, name, std::strerror(errno)));
}

// A mapping of a shared-memory object; unmaps on destruction.
struct Mapping {
  std::byte* data = nullptr;
  size_t size = 0;
  Mapping() = default;
  Mapping(Mapping&& o) noexcept : data(std::exchange(o.data, nullptr)), size(o.size) {}
  Mapping& operator=(Mapping&&) = delete;
  Mapping(const Mapping&) = delete;
  ~Mapping() {
    if (data != nullptr) munmap(data, size);
  }
};

class MockLocalRegion final : public LocalRegion {
 public:
  MockLocalRegion(std::string name, Mapping map)
      : name_(std::move(name)), map_(std::move(map)),
        descriptor_(fmt::format("{} {} {}", kDescriptorTag, name_, map_.size)) {}
  MockLocalRegion(const MockLocalRegion&) = delete;
  MockLocalRegion& operator=(const MockLocalRegion&) = delete;
  ~MockLocalRegion() override { seal(); }

  std::byte* data() const override { return map_.data; }
  size_t size() const override { return map_.size; }
  const std::string& descriptor() const override { return descriptor_; }
  void seal() override {
    if (!sealed_.exchange(true)) shm_unlink(name_.c_str());
  }

 private:
  std::string name_;
  Mapping map_;
  std::string descriptor_;
  std::atomic<bool> sealed_{false};
};

class MockRemoteRegion final : public RemoteRegion {
 public:
  explicit MockRemoteRegion(Mapping map) : map_(std::move(map)) {}
  size_t size() const override { return map_.size; }
  std::byte* data() const { return map_.data; }

 private:
  Mapping map_;
};

Result<Mapping> map_object(int fd, size_t size, std::string_view name) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno_status(Code::kResourceExhausted, "cannot map", name);
  Mapping m;
  m.data = static_cast<std::byte*>(p);
  m.size = size;
  return m;
}

class MockPeer final : public Peer {
 public:
  Result<std::shared_ptr<RemoteRegion>> attach(std::string_view descriptor) override {
    // "<tag> <name> <length>"
    std::string text(descriptor);
    char tag[32] = {}, name[96] = {};
    unsigned long long len = 0;
    char extra = 0;
    if (text.size() > 160 ||
        std::sscanf(text.c_str(), "%31s %95s %llu %c", tag, name, &len, &extra) != 3 ||
        kDescriptorTag != tag) {
      return Status(Code::kInvalidArgument,
                    "malformed memory descriptor for the mock transport (client and server "
                    "must both run --mock true)");
    }
    if (!valid_object_name(name)) {
      return Status(Code::kPermissionDenied,
                    fmt::format("memory descriptor names '{}', which is not a kvrdma "
                                "shared-memory object; refusing to map it", name));
    }
    if (len == 0) return Status(Code::kInvalidArgument, "memory descriptor of 0 bytes");
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) {
      return errno_status(Code::kFailedPrecondition,
                          "cannot open the peer's shared-memory object (is it on this host and "
                          "still alive?)", name);
    }
    struct stat st {};
    if (fstat(fd, &st) != 0 || static_cast<unsigned long long>(st.st_size) != len) {
      close(fd);
      return Status(Code::kInvalidArgument,
                    fmt::format("shared-memory object '{}' has {} bytes, descriptor says {}", name,
                                static_cast<long long>(st.st_size), len));
    }
    auto m = map_object(fd, len, name);
    close(fd);
    if (!m) return m.status();
    return std::shared_ptr<RemoteRegion>(std::make_shared<MockRemoteRegion>(std::move(*m)));
  }
};

class MockTransport final : public Transport {
 public:
  std::string kind() const override { return "mock"; }
  std::string description() const override { return "mock (memcpy through shared memory)"; }
  std::string address() const override { return fmt::format("{}{}", kAddressTag, getpid()); }

  Result<std::unique_ptr<LocalRegion>> allocate(size_t len) override {
    if (len == 0) return Status(Code::kInvalidArgument, "cannot register 0 bytes");
    size_t size = (len + memory::kPageSize - 1) / memory::kPageSize * memory::kPageSize;
    std::string name = random_name();
    int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return errno_status(Code::kResourceExhausted, "cannot create", name);
    if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
      Status s = errno_status(Code::kResourceExhausted,
                              fmt::format("cannot size {} bytes for", size), name);
      close(fd);
      shm_unlink(name.c_str());
      return s;
    }
    auto m = map_object(fd, size, name);
    close(fd);
    if (!m) {
      shm_unlink(name.c_str());
      return m.status();
    }
    return std::unique_ptr<LocalRegion>(std::make_unique<MockLocalRegion>(name, std::move(*m)));
  }

  Result<std::shared_ptr<Peer>> connect(std::string_view peer_address) override {
    if (peer_address.substr(0, kAddressTag.size()) != kAddressTag) {
      return Status(Code::kInvalidArgument,
                    "peer address is not a mock transport address (client and server must both "
                    "run --mock true)");
    }
    return std::shared_ptr<Peer>(std::make_shared<MockPeer>());
  }

  void write(const LocalRegion& src, size_t src_offset, std::shared_ptr<RemoteRegion> dst,
             size_t dst_offset, size_t len, Clock::time_point /*deadline*/,
             Completion done) override {
    auto* remote = dynamic_cast<MockRemoteRegion*>(dst.get());
    if (remote == nullptr) {
      done(Status(Code::kInvalidArgument, "destination region is not a mock region"));
      return;
    }
    if (src_offset > src.size() || len > src.size() - src_offset) {
      done(Status(Code::kInvalidArgument,
                  fmt::format("source range [{}, +{}) is outside the {}-byte local region",
                              src_offset, len, src.size())));
      return;
    }
    if (dst_offset > remote->size() || len > remote->size() - dst_offset) {
      done(Status(Code::kInvalidArgument,
                  fmt::format("destination range [{}, +{}) is outside the {}-byte remote region",
                              dst_offset, len, remote->size())));
      return;
    }
    if (len > 0) std::memcpy(remote->data() + dst_offset, src.data() + src_offset, len);
    done(Status());
  }
};

}  // namespace

std::unique_ptr<Transport> make_mock_transport() { return std::make_unique<MockTransport>(); }

size_t remove_stale_shm_objects() {
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return 0;
  size_t removed = 0;
  while (dirent* e = readdir(dir)) {
    std::string name = std::string("/") + e->d_name;
    if (!valid_object_name(name)) continue;
    long pid = std::strtol(e->d_name + std::strlen("kvrdma-"), nullptr, 10);
    if (pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      if (shm_unlink(name.c_str()) == 0) ++removed;
    }
  }
  closedir(dir);
  return removed;
}

}  // namespace kvrdma::transport
