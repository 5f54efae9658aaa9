// What only the mock does: processes on one host, /dev/shm objects, the names it will map, and
// cleaning up after killed processes. What every transport does is in
// transport_conformance_test.cc.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "transport/mock_transport.h"
#include "transport_cases.h"

using kvrdma::Code;
using kvrdma::Status;
using namespace kvrdma::transport;
using namespace kvrdma::transport::testing;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTag = "kvrdma-mock-v1";

// The shared-memory object behind a mock descriptor "<tag> <name> <length>".
std::string object_name(const LocalRegion& r) {
  const std::string& d = r.descriptor();
  size_t a = d.find(' ') + 1;
  return d.substr(a, d.find(' ', a) - a);
}
std::string object_path(const LocalRegion& r) { return "/dev/shm" + object_name(r); }

// Names in /dev/shm of objects created by process `pid`.
std::vector<std::string> objects_of(pid_t pid) {
  std::vector<std::string> names;
  const std::string prefix = "kvrdma-" + std::to_string(pid) + "-";
  for (const auto& e : fs::directory_iterator("/dev/shm")) {
    std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) names.push_back(n);
  }
  return names;
}

// A pipe whose ends close on destruction.
struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() { REQUIRE(pipe2(fd, O_CLOEXEC) == 0); }
  ~Pipe() { close_read(), close_write(); }
  void close_read() {
    if (fd[0] >= 0) close(std::exchange(fd[0], -1));
  }
  void close_write() {
    if (fd[1] >= 0) close(std::exchange(fd[1], -1));
  }
};

bool send_line(int fd, const std::string& line) {
  std::string s = line + "\n";
  return write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size());
}

// One line from `fd`, waiting at most 30 s; nullopt on timeout, EOF or error.
std::optional<std::string> read_line(int fd) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string line;
  for (int reads = 0; reads < 4096; ++reads) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1) return std::nullopt;
    char c;
    if (read(fd, &c, 1) != 1) return std::nullopt;
    if (c == '\n') return line;
    line += c;
  }
  return std::nullopt;
}

// Waits for `pid` and returns its exit code (-1 when it did not exit normally).
int wait_exit_code(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("mock: a child process writes into the parent's region, sealed after it attached",
          "[mock]") {
  constexpr size_t kSize = 1 << 20;
  Pipe to_child, to_parent;
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: no Catch assertions here; the exit code says which step failed.
    to_child.close_write();
    to_parent.close_read();
    auto address = read_line(to_child.fd[0]);
    auto descriptor = read_line(to_child.fd[0]);
    if (!address || !descriptor) _exit(2);
    auto t = make_mock_transport();
    auto src = t->allocate(kSize);
    if (!src) _exit(3);
    fill_pattern((*src)->data(), kSize, 9);
    auto peer = t->connect(*address);
    if (!peer) _exit(4);
    auto remote = (*peer)->attach(*descriptor);
    if (!remote) _exit(5);
    if (!send_line(to_parent.fd[1], "attached")) _exit(6);
    auto go = read_line(to_child.fd[0]);  // the parent seals in between
    if (!go) _exit(7);
    Status s = write_and_wait(*t, **src, 0, *remote, 0, kSize, deadline());
    _exit(s.is_ok() ? 0 : 8);
  }
  to_child.close_read();
  to_parent.close_write();
  auto t = make_mock_transport();
  auto dst = t->allocate(kSize);
  REQUIRE(dst.is_ok());
  std::memset((*dst)->data(), 0, kSize);
  REQUIRE(send_line(to_child.fd[1], t->address()));
  REQUIRE(send_line(to_child.fd[1], (*dst)->descriptor()));
  auto attached = read_line(to_parent.fd[0]);
  (*dst)->seal();  // as the server does once the client has attached
  CHECK_FALSE(fs::exists(object_path(**dst)));
  CHECK(send_line(to_child.fd[1], "go"));
  int code = wait_exit_code(pid);
  REQUIRE(attached == std::optional<std::string>("attached"));
  REQUIRE(code == 0);
  CHECK(first_pattern_mismatch((*dst)->data(), kSize, 9) == kSize);
}

TEST_CASE("mock: the parent writes into a child's region", "[mock]") {
  constexpr size_t kSize = (1 << 20) + 5;
  Pipe to_child, to_parent;
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    to_child.close_write();
    to_parent.close_read();
    auto t = make_mock_transport();
    auto dst = t->allocate(kSize);
    if (!dst) _exit(2);
    if (!send_line(to_parent.fd[1], (*dst)->descriptor())) _exit(3);
    auto written = read_line(to_child.fd[0]);
    if (!written) _exit(4);
    bool ok = first_pattern_mismatch((*dst)->data(), kSize, 10) == kSize;
    dst->reset();  // unlinks the object before _exit skips destructors
    _exit(ok ? 0 : 5);
  }
  to_child.close_read();
  to_parent.close_write();
  auto t = make_mock_transport();
  auto src = t->allocate(kSize);
  REQUIRE(src.is_ok());
  fill_pattern((*src)->data(), kSize, 10);
  auto descriptor = read_line(to_parent.fd[0]);
  REQUIRE(descriptor.has_value());
  auto remote = (*t->connect("kvrdma-mock:" + std::to_string(pid)))->attach(*descriptor);
  REQUIRE(remote.status().message() == "");
  CHECK((*remote)->size() >= kSize);
  CHECK(write_and_wait(*t, **src, 0, *remote, 0, kSize, deadline()).is_ok());
  CHECK(send_line(to_child.fd[1], "written"));
  CHECK(wait_exit_code(pid) == 0);
  CHECK(objects_of(pid).empty());
}

TEST_CASE("mock: seal unlinks the object, attached peers keep working", "[mock]") {
  auto t = make_mock_transport();
  auto src = t->allocate(kPage);
  auto dst = t->allocate(kPage);
  REQUIRE(src.is_ok());
  REQUIRE(dst.is_ok());
  std::string path = object_path(**dst);
  CHECK(fs::exists(path));
  CHECK((fs::status(path).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write));
  auto peer = *t->connect(t->address());
  auto remote = peer->attach((*dst)->descriptor());
  REQUIRE(remote.is_ok());
  (*dst)->seal();
  CHECK_FALSE(fs::exists(path));
  (*dst)->seal();
  CHECK(peer->attach((*dst)->descriptor()).status().code() == Code::kFailedPrecondition);
  (*src)->data()[0] = std::byte{42};
  REQUIRE(write_and_wait(*t, **src, 0, *remote, 0, 1, deadline()).is_ok());
  CHECK((*dst)->data()[0] == std::byte{42});
}

TEST_CASE("mock: attach maps only the mock's own objects", "[mock]") {
  auto t = make_mock_transport();
  auto peer = *t->connect(t->address());
  auto attach_code = [&](const std::string& name, const std::string& len = "4096") {
    return peer->attach(std::string(kTag) + " " + name + " " + len).status().code();
  };
  for (const char* name :
       {"/etc/passwd", "../x", "/kvrdma-1-zz", "/kvrdma-1-zzzzzzzzzzzzzzzz",
        "/kvrdma-1-0123456789ABCDEF", "kvrdma-1-0123456789abcdef",
        "/dev/shm/kvrdma-1-0123456789abcdef", "/kvrdma-12345678901-0123456789abcdef",
        "/kvrdma--0123456789abcdef", "/kvrdma-1-0123456789abcdef0", "/kvrdma-1-../../etc/pass",
        "//kvrdma-1-0123456789abcdef"}) {
    INFO(name);
    CHECK(attach_code(name) == Code::kPermissionDenied);
    CHECK_FALSE(fs::exists(std::string("/dev/shm/") + name));  // never created either
  }
  auto p = peer->attach(std::string(kTag) + " /etc/passwd 4096");
  CHECK(p.status().message().find("'/etc/passwd', which is not a kvrdma shared-memory object") !=
        std::string::npos);

  // Well-formed and of our pattern, but nobody made it: unreachable, and not created by attaching.
  CHECK(attach_code("/kvrdma-1-0123456789abcdef") == Code::kFailedPrecondition);
  CHECK_FALSE(fs::exists("/dev/shm/kvrdma-1-0123456789abcdef"));

  auto r = t->allocate(kPage);
  REQUIRE(r.is_ok());
  std::string name = object_name(**r);
  CHECK(attach_code(name, "4096") == Code::kOk);
  CHECK(attach_code(name, "8192") == Code::kInvalidArgument);  // size mismatch
  for (const char* len : {"0", "4095", "-4096", "+4096", "4096x", "", "99999999999999999999999",
                          "18446744073709551615"}) {
    INFO("length '" << len << "'");
    CHECK(attach_code(name, len) == Code::kInvalidArgument);
  }
  const std::string good = (*r)->descriptor();
  for (const std::string& d :
       {good + "\n", " " + good, good + " ", "kvrdma-mock-v2" + good.substr(kTag.size()),
        std::string(kTag) + "  " + name + " 4096", good + std::string(1, '\0')}) {
    INFO("descriptor '" << d << "'");
    CHECK(peer->attach(d).status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("mock: connect accepts only mock addresses", "[mock]") {
  auto t = make_mock_transport();
  CHECK(t->connect(t->address()).is_ok());
  for (const char* a : {"", "kvrdma-mock:", "kvrdma-mock:12x", "mock", "127.0.0.1:5000",
                        "kvrdma-mock:123456789012"}) {
    INFO("address '" << a << "'");
    CHECK(t->connect(a).status().code() == Code::kInvalidArgument);
  }
  CHECK(t->kind() == "mock");
  CHECK(t->address() == "kvrdma-mock:" + std::to_string(getpid()));
}

TEST_CASE("mock: no region leaves anything in /dev/shm", "[mock]") {
  auto t = make_mock_transport();
  const size_t before = objects_of(getpid()).size();
  std::string path, sealed_path;
  {
    auto r = t->allocate(kPage);
    auto s = t->allocate(kPage);
    REQUIRE(r.is_ok());
    REQUIRE(s.is_ok());
    path = object_path(**r);
    sealed_path = object_path(**s);
    CHECK(fs::exists(path));
    (*s)->seal();
  }
  CHECK_FALSE(fs::exists(path));
  CHECK_FALSE(fs::exists(sealed_path));
  // Failures half way leave nothing either: too large to size, and too large for /dev/shm.
  CHECK(t->allocate(SIZE_MAX).status().code() == Code::kResourceExhausted);
  auto huge = t->allocate(size_t{1} << 50);
  CHECK(huge.status().code() == Code::kResourceExhausted);
  CHECK(huge.status().message().find("/dev/shm") != std::string::npos);
  CHECK(objects_of(getpid()).size() == before);
}

TEST_CASE("mock: stale objects of dead processes are removed, live ones kept", "[mock]") {
  // A process that dies without cleaning up, as a killed one would.
  pid_t dead = fork();
  REQUIRE(dead >= 0);
  if (dead == 0) {
    auto r = make_mock_transport()->allocate(kPage);
    _exit(r.is_ok() ? 0 : 2);  // _exit runs no destructor: the object stays
  }
  REQUIRE(wait_exit_code(dead) == 0);
  REQUIRE(objects_of(dead).size() == 1);

  // A process that is alive while we clean up.
  Pipe to_child, to_parent;
  pid_t live = fork();
  REQUIRE(live >= 0);
  if (live == 0) {
    to_child.close_write();
    to_parent.close_read();
    auto r = make_mock_transport()->allocate(kPage);
    if (!r || !send_line(to_parent.fd[1], "ready")) _exit(2);
    read_line(to_child.fd[0]);  // EOF when the parent is done
    r->reset();
    _exit(0);
  }
  to_child.close_read();
  to_parent.close_write();
  REQUIRE(read_line(to_parent.fd[0]) == std::optional<std::string>("ready"));
  auto ours = make_mock_transport()->allocate(kPage);
  REQUIRE(ours.is_ok());

  CHECK(remove_stale_shm_objects() >= 1);
  CHECK(objects_of(dead).empty());
  CHECK(objects_of(live).size() == 1);
  CHECK(fs::exists(object_path(**ours)));

  to_child.close_write();
  CHECK(wait_exit_code(live) == 0);
  CHECK(objects_of(live).empty());
}
