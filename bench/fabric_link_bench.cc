// The request channel's fabric link alone (no store, no codec): a client process posts
// GET-sized requests and a server process (forked) answers each with a GET-sized completion, as
// the channel thread would. Prints round trips per second and latency percentiles.
//
//   fabric_link_bench [--provider shm|tcp] [--threads T] [--depth D] [--seconds S]
//                     [--request B] [--response B] [--poll-us N]
//
// Each client thread owns `depth` slots and keeps them all in flight (closed loop). Defaults:
// a GET of a 16-byte key (72 + 16 bytes) answered with a 64-byte value inline (32 + 24 + 64).
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "channel/fabric_link.h"
#include "transport/transport.h"

using namespace kvrdma;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string provider = "shm";
  uint32_t threads = 1, depth = 1;
  double seconds = 3;
  size_t request = 88, response = 120;
  int64_t poll_us = 50;  // the server polls this long after its last request, then sleeps
};

std::unique_ptr<transport::Transport> open(const std::string& provider) {
  TransportOptions o;
  o.mock = false;
  o.provider = provider;
  auto t = transport::make_transport(o);
  if (!t) {
    fmt::print(stderr, "{}\n", t.status().to_string());
    std::exit(2);
  }
  return std::move(t).value();
}

bool read_line(int fd, std::string* out) {
  char c;
  out->clear();
  while (::read(fd, &c, 1) == 1) {
    if (c == '\n') return true;
    *out += c;
  }
  return false;
}

// The server: opens the link from the offer on `in`, writes the accept to `out`, then serves
// until `in` closes (polls ~50 us after the last request, then sleeps on the host).
int serve(const Args& a, int in, int out) {
  auto t = open(a.provider);
  auto host = channel::make_fabric_link_host(*t);
  if (!host) return fmt::print(stderr, "{}\n", host.status().to_string()), 2;
  std::string offer, accept;
  if (!read_line(in, &offer)) return 2;
  auto link = (*host)->open(offer, &accept);
  if (!link) return fmt::print(stderr, "{}\n", link.status().to_string()), 2;
  accept += '\n';
  if (::write(out, accept.data(), accept.size()) != static_cast<ssize_t>(accept.size())) return 2;
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    char c;
    while (::read(in, &c, 1) > 0) {
    }
    stop = true;
    (*host)->wake();
  });
  std::vector<std::byte> answer(a.response, std::byte{0x42});
  auto fn = [&](const channel::IncomingRequest& r) {
    (void)(*link)->complete(r.slot, r.generation, {answer.data(), answer.size()});
  };
  auto last = Clock::now();
  while (!stop) {
    if ((*link)->take(64, fn) > 0) {
      last = Clock::now();
      continue;
    }
    if (Clock::now() - last < std::chrono::microseconds(a.poll_us)) continue;
    (*host)->prepare_sleep();
    if ((*link)->take(64, fn) > 0) {
      (*host)->cancel_sleep();
      last = Clock::now();
      continue;
    }
    (*host)->sleep(Clock::now() + std::chrono::milliseconds(100));
    last = Clock::now();
  }
  watcher.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--provider") a.provider = v;
    else if (k == "--threads") a.threads = std::stoul(v);
    else if (k == "--depth") a.depth = std::stoul(v);
    else if (k == "--seconds") a.seconds = std::stod(v);
    else if (k == "--request") a.request = std::stoul(v);
    else if (k == "--response") a.response = std::stoul(v);
    else if (k == "--poll-us") a.poll_us = std::stoll(v);
    else return fmt::print(stderr, "unknown option {}\n", k), 2;
  }
  int to_server[2], from_server[2];
  if (pipe(to_server) || pipe(from_server)) return 2;
  pid_t child = fork();
  if (child == 0) {
    close(to_server[1]);
    close(from_server[0]);
    _exit(serve(a, to_server[0], from_server[1]));
  }
  close(to_server[0]);
  close(from_server[1]);

  auto t = open(a.provider);
  const uint32_t slots = a.threads * a.depth;
  auto link = channel::make_fabric_client_link(*t, slots, 8192);
  if (!link) return fmt::print(stderr, "{}\n", link.status().to_string()), 2;
  std::string offer = (*link)->offer() + "\n", accept;
  if (::write(to_server[1], offer.data(), offer.size()) != static_cast<ssize_t>(offer.size()) ||
      !read_line(from_server[0], &accept) || !(*link)->accept(accept).is_ok()) {
    return fmt::print(stderr, "link setup failed\n"), 2;
  }

  std::atomic<bool> go{false}, stop{false};
  std::vector<std::vector<uint32_t>> latencies(a.threads);  // microseconds x 10
  std::vector<uint64_t> errors(a.threads, 0);
  std::vector<std::thread> workers;
  for (uint32_t w = 0; w < a.threads; ++w) {
    workers.emplace_back([&, w] {
      std::vector<std::byte> req(a.request, std::byte{0x17});
      std::vector<uint64_t> gen(a.depth, 0);
      std::vector<Clock::time_point> sent(a.depth);
      while (!go) std::this_thread::yield();
      auto post = [&](uint32_t d) {
        uint32_t slot = w * a.depth + d;
        sent[d] = Clock::now();
        if (!(*link)->post(slot, ++gen[d], {req.data(), req.size()}).is_ok()) ++errors[w];
      };
      for (uint32_t d = 0; d < a.depth; ++d) post(d);
      (*link)->ring();
      while (!stop) {
        for (uint32_t d = 0; d < a.depth; ++d) {
          uint32_t slot = w * a.depth + d;
          Status s = (*link)->wait(slot, gen[d], Clock::now() + std::chrono::seconds(5));
          auto got = (*link)->poll(slot, gen[d]);
          if (!s.is_ok() || got.size() != a.response) ++errors[w];
          latencies[w].push_back(static_cast<uint32_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - sent[d]).count() /
              100));
          post(d);
        }
        (*link)->ring();
      }
      for (uint32_t d = 0; d < a.depth; ++d) {
        (void)(*link)->wait(w * a.depth + d, gen[d], Clock::now() + std::chrono::seconds(5));
      }
    });
  }
  go = true;
  auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));
  stop = true;
  for (auto& th : workers) th.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  close(to_server[1]);
  int status = 0;
  waitpid(child, &status, 0);

  std::vector<uint32_t> all;
  uint64_t errs = 0;
  for (uint32_t w = 0; w < a.threads; ++w) {
    all.insert(all.end(), latencies[w].begin(), latencies[w].end());
    errs += errors[w];
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) { return all.empty() ? 0.0 : all[size_t(p * (all.size() - 1))] / 10.0; };
  fmt::print(
      "fabric link {} threads {} depth {} request {} B response {} B: {:.0f} round trips/s, "
      "p50 {:.1f} us, p99 {:.1f} us, errors {}\n",
      a.provider, a.threads, a.depth, a.request, a.response, all.size() / elapsed, pct(0.5),
      pct(0.99), errs);
  return errs == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
