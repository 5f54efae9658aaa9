// Write bandwidth of a transport between two processes, the limit kvrdma's GET path runs against.
// The target process only registers a region and keeps its endpoint progressing; the initiator
// keeps `window` writes in flight (64, as fabtests' fi_rma_bw) and reports per size:
// MB/s (10^6 B/s, fabtests' unit), GB/s, us per write. For libfabric the writes are fi_writemsg
// with FI_DELIVERY_COMPLETE, exactly as kvrdma issues them.
//
//   transport_write_bw [--provider mock|tcp|shm] [--sizes 4096,1048576] [--seconds 2] [--json]
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "transport/transport.h"

using namespace kvrdma;
using namespace kvrdma::transport;

namespace {

struct Args {
  std::string provider = "mock";
  std::vector<size_t> sizes = {4096, 1 << 20};
  double seconds = 2;
  int window = 64;
  bool json = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (k == "--provider") a.provider = next();
    else if (k == "--seconds") a.seconds = std::stod(next());
    else if (k == "--window") a.window = std::stoi(next());
    else if (k == "--json") a.json = true;
    else if (k == "--sizes") {
      a.sizes.clear();
      std::string v = next();
      for (size_t p = 0; p < v.size();) {
        size_t c = v.find(',', p);
        a.sizes.push_back(std::stoull(v.substr(p, c - p)));
        p = c == std::string::npos ? v.size() : c + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: %s [--provider mock|tcp|shm] [--sizes N,N] [--seconds S] "
                   "[--window W] [--json]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return a;
}

std::unique_ptr<Transport> open_transport(const std::string& provider) {
  TransportOptions o;
  o.mock = provider == "mock";
  o.provider = provider;
  auto t = make_transport(o);
  if (!t) {
    std::fprintf(stderr, "transport_write_bw: %s\n", t.status().to_string().c_str());
    std::exit(3);
  }
  return std::move(t).value();
}

void send_string(int fd, const std::string& s) {
  uint32_t n = static_cast<uint32_t>(s.size());
  if (write(fd, &n, 4) != 4 || write(fd, s.data(), n) != static_cast<ssize_t>(n)) std::exit(4);
}

std::string recv_string(int fd) {
  uint32_t n = 0;
  if (read(fd, &n, 4) != 4) std::exit(4);
  std::string s(n, '\0');
  for (size_t got = 0; got < n;) {
    ssize_t r = read(fd, s.data() + got, n - got);
    if (r <= 0) std::exit(4);
    got += static_cast<size_t>(r);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse(argc, argv);
  size_t max_size = 0;
  for (size_t s : args.sizes) max_size = std::max(max_size, s);
  int to_parent[2], to_child[2];
  if (pipe(to_parent) != 0 || pipe(to_child) != 0) return 3;
  pid_t pid = fork();
  if (pid == 0) {  // target: register, publish, progress until told to stop
    auto t = open_transport(args.provider);
    auto region = t->allocate(max_size * 2);
    if (!region) return 3;
    // The initiator writes into us for the whole run: keep our endpoint progressed eagerly.
    transport::WriteExpectation incoming = t->expect_writes();
    send_string(to_parent[1], t->address());
    send_string(to_parent[1], (*region)->descriptor());
    char done;
    (void)!read(to_child[0], &done, 1);
    return 0;
  }
  auto t = open_transport(args.provider);
  std::string address = recv_string(to_parent[0]);
  std::string descriptor = recv_string(to_parent[0]);
  auto src = t->allocate(max_size);
  auto peer = t->connect(address);
  if (!src || !peer) return 3;
  auto remote = (*peer)->attach(descriptor);
  if (!remote) return 3;
  std::memset((*src)->data(), 0xab, max_size);

  if (args.json) std::printf("[");
  else std::printf("%-10s %12s %10s %10s %12s\n", "size", "MB/s", "GB/s", "us/write", "writes");
  bool first = true;
  for (size_t size : args.sizes) {
    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0;
    uint64_t completed = 0, failed = 0;
    auto start = std::chrono::steady_clock::now();
    auto stop = start + std::chrono::duration<double>(args.seconds);
    uint64_t issued = 0;
    while (std::chrono::steady_clock::now() < stop) {
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return in_flight < args.window; });
        ++in_flight;
      }
      t->write(**src, 0, *remote, (issued % 2) * size, size,
               std::chrono::steady_clock::now() + std::chrono::seconds(30), [&](Status s) {
                 std::lock_guard lock(mu);
                 --in_flight;
                 ++completed;
                 if (!s.is_ok()) ++failed;
                 cv.notify_all();
               });
      ++issued;
    }
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight == 0; });
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double bps = static_cast<double>(completed - failed) * size / secs;
    double us = secs * 1e6 / static_cast<double>(completed ? completed : 1);
    if (args.json) {
      std::printf(
          "%s{\"provider\":\"%s\",\"size\":%zu,\"mb_per_sec\":%.1f,\"gb_per_sec\":%.3f,"
          "\"us_per_write\":%.2f,\"writes\":%llu,\"errors\":%llu}",
          first ? "" : ",", args.provider.c_str(), size, bps / 1e6, bps / 1e9, us,
          static_cast<unsigned long long>(completed), static_cast<unsigned long long>(failed));
    } else {
      std::printf("%-10zu %12.1f %10.3f %10.2f %12llu%s\n", size, bps / 1e6, bps / 1e9, us,
                  static_cast<unsigned long long>(completed), failed ? "  (errors!)" : "");
    }
    first = false;
  }
  if (args.json) std::printf("]\n");
  (void)!write(to_child[1], "x", 1);
  int status = 0;
  waitpid(pid, &status, 0);
  return 0;
}
