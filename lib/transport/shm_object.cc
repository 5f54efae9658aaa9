#include "transport/shm_object.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstring>
#include <limits>
#include <utility>

namespace kvrdma::transport::shm {
namespace {

constexpr std::string_view kPrefix = "/kvrdma-";
constexpr size_t kMaxPidDigits = 10;
constexpr size_t kRandomDigits = 16;
constexpr int kCreateAttempts = 8;  // a name collision needs 64 equal random bits; 8 is plenty

bool all_of(std::string_view s, bool (*pred)(char)) {
  for (char c : s) {
    if (!pred(c)) return false;
  }
  return true;
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

uint64_t random_bits() {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) == static_cast<ssize_t>(sizeof r)) return r;
  // Without the kernel's entropy (very early boot), time and a counter still keep names of one
  // process distinct; O_EXCL catches any collision anyway.
  static std::atomic<uint64_t> counter{0};
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return static_cast<uint64_t>(now) ^ (++counter * 0x9e3779b97f4a7c15ull);
}

// The pid part of a valid object name.
bool pid_of(std::string_view name, pid_t* pid) {
  std::string_view digits = name.substr(kPrefix.size());
  digits = digits.substr(0, digits.find('-'));
  long long v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || v <= 0 || v > INT_MAX) return false;
  *pid = static_cast<pid_t>(v);
  return true;
}

}  // namespace

bool is_object_name(std::string_view name) {
  if (name.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string_view rest = name.substr(kPrefix.size());
  size_t dash = rest.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash > kMaxPidDigits) return false;
  std::string_view pid = rest.substr(0, dash);
  std::string_view random = rest.substr(dash + 1);
  return all_of(pid, is_digit) && random.size() == kRandomDigits && all_of(random, is_lower_hex);
}

std::string new_object_name() {
  return fmt::format("{}{}-{:016x}", kPrefix, getpid(), random_bits());
}

Mapping::Mapping(Mapping&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Mapping::~Mapping() {
  if (data_ != nullptr) munmap(data_, size_);
}

namespace {

// Closes a descriptor on every path out of a function.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

Result<Mapping> map_fd(int fd, size_t size, const std::string& name) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    return Status(Code::kResourceExhausted,
                  fmt::format("cannot map {} bytes of shared-memory object '{}': {}", size, name,
                              std::strerror(errno)));
  }
  return Mapping(static_cast<std::byte*>(p), size);
}

Code create_error_code(int err) {
  switch (err) {
    case ENOSPC:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case EFBIG: return Code::kResourceExhausted;
    default: return Code::kFailedPrecondition;
  }
}

// Sizes and reserves the pages of a freshly created object.
Status reserve(int fd, size_t size, const std::string& name) {
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    return Status(create_error_code(err), fmt::format("cannot size shared-memory object '{}' to "
                                                      "{} bytes: {}",
                                                      name, size, std::strerror(err)));
  }
  int err = EINTR;
  for (int attempt = 0; attempt < 16 && err == EINTR; ++attempt) {
    err = posix_fallocate(fd, 0, static_cast<off_t>(size));
  }
  if (err == 0 || err == EOPNOTSUPP) return Status();  // unsupported: pages come on first touch
  return Status(create_error_code(err),
                fmt::format("cannot reserve {} bytes in /dev/shm for '{}': {}; free space in "
                            "/dev/shm (df -h /dev/shm) or register less memory",
                            size, name, std::strerror(err)));
}

}  // namespace

Result<OwnedObject> OwnedObject::create(size_t size) {
  if (size == 0 || size > static_cast<size_t>(std::numeric_limits<off_t>::max())) {
    return Status(Code::kInvalidArgument,
                  fmt::format("cannot create a shared-memory object of {} bytes", size));
  }
  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    std::string name = new_object_name();
    Fd fd{shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
    if (fd.fd < 0) {
      int err = errno;
      if (err == EEXIST) continue;
      return Status(create_error_code(err),
                    fmt::format("cannot create shared-memory object '{}': {} (is /dev/shm "
                                "mounted and writable?)",
                                name, std::strerror(err)));
    }
    // From here the name exists: every failure unlinks it before returning.
    Status s = reserve(fd.fd, size, name);
    Result<Mapping> map = s.is_ok() ? map_fd(fd.fd, size, name) : Result<Mapping>(s);
    if (!map) {
      shm_unlink(name.c_str());
      return map.status();
    }
    return OwnedObject(std::move(name), std::move(*map));
  }
  return Status(Code::kInternal, fmt::format("{} random shared-memory object names were all taken",
                                             kCreateAttempts));
}

OwnedObject::OwnedObject(OwnedObject&& other) noexcept
    : name_(std::exchange(other.name_, std::string())), map_(std::move(other.map_)) {}

OwnedObject::~OwnedObject() { unlink(); }

void OwnedObject::unlink() {
  if (name_.empty()) return;
  shm_unlink(name_.c_str());
  name_.clear();
}

Result<Mapping> open_object(const std::string& name, size_t size) {
  if (!is_object_name(name)) {
    return Status(Code::kPermissionDenied,
                  fmt::format("'{}' is not a kvrdma shared-memory object", name));
  }
  // No O_CREAT: a peer's object either exists or the attach fails; we never make one for it.
  Fd fd{shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0)};
  if (fd.fd < 0) {
    int err = errno;
    return Status(Code::kFailedPrecondition,
                  fmt::format("cannot open the peer's shared-memory object '{}': {} (the peer must "
                              "run on this host as the same user, and be attached before it "
                              "seals the region)",
                              name, std::strerror(err)));
  }
  struct stat st {};
  if (fstat(fd.fd, &st) != 0) {
    return Status(Code::kFailedPrecondition,
                  fmt::format("cannot stat shared-memory object '{}': {}", name,
                              std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode) || st.st_size < 0 || static_cast<uint64_t>(st.st_size) != size) {
    return Status(Code::kInvalidArgument,
                  fmt::format("shared-memory object '{}' has {} bytes but its descriptor says {}",
                              name, static_cast<long long>(st.st_size), size));
  }
  return map_fd(fd.fd, size, name);
}

size_t remove_stale_objects() {
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return 0;
  size_t removed = 0;
  const pid_t self = getpid();
  while (const dirent* e = readdir(dir)) {
    std::string name = std::string("/") + e->d_name;
    pid_t pid = 0;
    if (!is_object_name(name) || !pid_of(name, &pid) || pid == self) continue;
    // EPERM means the process exists under another user: not ours to judge, keep it.
    if (kill(pid, 0) != 0 && errno == ESRCH && shm_unlink(name.c_str()) == 0) ++removed;
  }
  closedir(dir);
  return removed;
}

}  // namespace kvrdma::transport::shm
