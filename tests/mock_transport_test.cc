#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "transport/mock_transport.h"

using kvrdma::Code;
using namespace kvrdma::transport;
using kvrdma::Status;

namespace {

constexpr auto kDeadline = std::chrono::seconds(10);

Transport::Clock::time_point deadline() { return Transport::Clock::now() + kDeadline; }

std::string object_path(const LocalRegion& r) {
  // descriptor: "<tag> /kvrdma-... <len>"
  std::string d = r.descriptor();
  auto a = d.find(' ') + 1;
  return "/dev/shm" + d.substr(a, d.find(' ', a) - a);
}

}  // namespace

TEST_CASE("mock: write lands byte-exact in the peer's region", "[mock]") {
  auto server = make_mock_transport();
  auto client = make_mock_transport();
  auto src = server->allocate(1 << 20);
  auto dst = client->allocate(1 << 20);
  REQUIRE(src.is_ok());
  REQUIRE(dst.is_ok());
  CHECK(reinterpret_cast<uintptr_t>((*src)->data()) % 4096 == 0);
  for (size_t i = 0; i < (*src)->size(); ++i) (*src)->data()[i] = std::byte(i * 7);
  auto peer = server->connect(client->address());
  REQUIRE(peer.is_ok());
  auto remote = (*peer)->attach((*dst)->descriptor());
  REQUIRE(remote.is_ok());
  for (size_t len : {1ul, 4096ul, 1ul << 20}) {
    std::memset((*dst)->data(), 0, (*dst)->size());
    REQUIRE(write_and_wait(*server, **src, 0, *remote, 0, len, deadline()).is_ok());
    CHECK(std::memcmp((*dst)->data(), (*src)->data(), len) == 0);
  }
}

TEST_CASE("mock: out-of-range writes are refused and write nothing", "[mock]") {
  auto t = make_mock_transport();
  auto src = t->allocate(8192);
  auto dst = t->allocate(8192);
  REQUIRE(src.is_ok());
  REQUIRE(dst.is_ok());
  std::memset((*dst)->data(), 0x5a, 8192);
  auto remote = (*t->connect(t->address()))->attach((*dst)->descriptor());
  REQUIRE(remote.is_ok());
  CHECK(write_and_wait(*t, **src, 0, *remote, 8000, 200, deadline()).code() == Code::kInvalidArgument);
  CHECK(write_and_wait(*t, **src, 8000, *remote, 0, 200, deadline()).code() == Code::kInvalidArgument);
  CHECK(write_and_wait(*t, **src, 0, *remote, SIZE_MAX, 2, deadline()).code() == Code::kInvalidArgument);
  CHECK(write_and_wait(*t, **src, 0, *remote, 1, SIZE_MAX, deadline()).code() == Code::kInvalidArgument);
  for (int i = 0; i < 8192; ++i) REQUIRE((*dst)->data()[i] == std::byte{0x5a});
}

TEST_CASE("mock: attach maps only the mock's own objects", "[mock]") {
  auto t = make_mock_transport();
  auto peer = t->connect(t->address());
  REQUIRE(peer.is_ok());
  CHECK((*peer)->attach("kvrdma-mock-v1 /etc/passwd 4096").status().code() == Code::kPermissionDenied);
  CHECK((*peer)->attach("kvrdma-mock-v1 ../../etc/passwd 4096").status().code() == Code::kPermissionDenied);
  CHECK((*peer)->attach("kvrdma-mock-v1 /kvrdma-1-zzzzzzzzzzzzzzzz 4096").status().code() == Code::kPermissionDenied);
  CHECK((*peer)->attach("kvrdma-mock-v1 /kvrdma-1-0123456789abcdef 4096").status().code() == Code::kFailedPrecondition);
  CHECK((*peer)->attach("garbage").status().code() == Code::kInvalidArgument);
  CHECK((*peer)->attach("").status().code() == Code::kInvalidArgument);
  auto r = t->allocate(4096);
  REQUIRE(r.is_ok());
  std::string d = (*r)->descriptor();
  std::string wrong = d.substr(0, d.rfind(' ')) + " 8192";
  CHECK((*peer)->attach(wrong).status().code() == Code::kInvalidArgument);
  CHECK(t->connect("fabric-address").status().code() == Code::kInvalidArgument);
}

TEST_CASE("mock: seal unlinks the object; attached peers keep working", "[mock]") {
  auto t = make_mock_transport();
  auto src = t->allocate(4096);
  auto dst = t->allocate(4096);
  REQUIRE(dst.is_ok());
  std::string path = object_path(**dst);
  CHECK(std::filesystem::exists(path));
  auto peer = *t->connect(t->address());
  auto remote = peer->attach((*dst)->descriptor());
  REQUIRE(remote.is_ok());
  (*dst)->seal();
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK(peer->attach((*dst)->descriptor()).status().code() == Code::kFailedPrecondition);
  (*src)->data()[0] = std::byte{42};
  REQUIRE(write_and_wait(*t, **src, 0, *remote, 0, 1, deadline()).is_ok());
  CHECK((*dst)->data()[0] == std::byte{42});
}

TEST_CASE("mock: destroying a region leaves nothing in /dev/shm", "[mock]") {
  auto t = make_mock_transport();
  std::string path;
  {
    auto r = t->allocate(4096);
    REQUIRE(r.is_ok());
    path = object_path(**r);
    CHECK(std::filesystem::exists(path));
  }
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("mock: a child process writes into the parent's region", "[mock]") {
  auto t = make_mock_transport();
  auto dst = t->allocate(1 << 20);
  REQUIRE(dst.is_ok());
  std::string descriptor = (*dst)->descriptor();
  std::string address = t->address();
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto ct = make_mock_transport();
    auto src = ct->allocate(1 << 20);
    if (!src) _exit(2);
    for (size_t i = 0; i < (1 << 20); ++i) (*src)->data()[i] = std::byte(i % 251);
    auto peer = ct->connect(address);
    if (!peer) _exit(3);
    auto remote = (*peer)->attach(descriptor);
    if (!remote) _exit(4);
    Status s = write_and_wait(*ct, **src, 0, *remote, 0, 1 << 20, deadline());
    _exit(s.is_ok() ? 0 : 5);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  for (size_t i = 0; i < (1 << 20); ++i) REQUIRE((*dst)->data()[i] == std::byte(i % 251));
}

TEST_CASE("mock: stale objects of dead processes are removed", "[mock]") {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto t = make_mock_transport();
    auto r = t->allocate(4096);
    if (!r) _exit(1);
    // Leave the object behind as a killed process would.
    std::string path = object_path(**r);
    if (write(1, "", 0) < 0) _exit(1);
    std::quick_exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  bool found = false;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
    if (e.path().filename().string().rfind("kvrdma-" + std::to_string(pid) + "-", 0) == 0) found = true;
  }
  REQUIRE(found);
  auto live = make_mock_transport()->allocate(4096);  // ours: must survive
  REQUIRE(live.is_ok());
  CHECK(remove_stale_shm_objects() >= 1);
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
    CHECK(e.path().filename().string().rfind("kvrdma-" + std::to_string(pid) + "-", 0) != 0);
  }
  CHECK(std::filesystem::exists(object_path(**live)));
}

TEST_CASE("mock: concurrent writes into disjoint ranges all arrive", "[mock]") {
  auto t = make_mock_transport();
  auto src = t->allocate(8 << 20);
  auto dst = t->allocate(8 << 20);
  REQUIRE(src.is_ok());
  REQUIRE(dst.is_ok());
  for (size_t i = 0; i < (8u << 20); ++i) (*src)->data()[i] = std::byte(i * 13);
  auto remote = *(*t->connect(t->address()))->attach((*dst)->descriptor());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int k = 0; k < 8; ++k) {
    threads.emplace_back([&, k] {
      size_t off = static_cast<size_t>(k) << 20;
      if (!write_and_wait(*t, **src, off, remote, off, 1 << 20, deadline()).is_ok()) ++failures;
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(std::memcmp((*src)->data(), (*dst)->data(), 8 << 20) == 0);
}
