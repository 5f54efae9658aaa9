// Raw libfabric RMA-write bandwidth between two processes on this host: the ceiling kvrdma's GET
// path is measured against (issue 6). No kvrdma code is involved: one RDM endpoint per process,
// fi_writemsg with `window` writes in flight (64, as fabtests' fi_rma_bw), the target process only
// registers a buffer and keeps its CQ progressed (both providers here use manual progress).
//
// Each size is measured twice: with the default transmit completion (what fabtests reports: the
// source may be reused, the bytes may not have landed yet) and with FI_DELIVERY_COMPLETE (the
// bytes are visible at the target — the only completion a kvrdma GET may answer on). The last
// write of each run carries a pattern the target checks, so the figures are of writes that landed.
//
//   fi_write_bw [--provider shm|tcp] [--sizes 4096,1048576 | --size N] [--seconds 2]
//               [--window 64] [--span 134217728] [--completion both|transmit|delivery] [--json]
// Writes cycle through `span` bytes of source and target memory (default 128 MiB), so values come
// from DRAM as a cache's would, not from two cache-resident slots (--span 0 gives those).
// Output: a table, or with --json one JSON object per line
//   {"provider":..,"size":..,"completion":..,"gbps":..,"mbps":..,"us_per_write":..,"writes":..}
// (gbps = 10^9 bytes/s, mbps = 10^6 bytes/s as fabtests prints "MB/sec").
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using SteadyClock = std::chrono::steady_clock;

struct Args {
  std::string provider = "shm";
  std::vector<size_t> sizes = {4096, 65536, 1 << 20, 16 << 20};
  double seconds = 2;
  int window = 64;
  size_t span = 128ull << 20;  // bytes each side cycles through (0: two slots of one size)
  std::string completion = "both";
  bool target_sleeps = false;  // target blocks in fi_cq_sread instead of spinning on fi_cq_read
  bool json = false;
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--provider shm|tcp] [--sizes N,N,.. | --size N] [--seconds S] "
               "[--window W] [--span BYTES] [--completion both|transmit|delivery] [--json]\n",
               argv0);
  std::exit(2);
}

std::vector<size_t> parse_sizes(const std::string& v) {
  std::vector<size_t> out;
  for (size_t p = 0; p < v.size();) {
    size_t c = v.find(',', p);
    out.push_back(std::strtoull(v.substr(p, c - p).c_str(), nullptr, 10));
    p = c == std::string::npos ? v.size() : c + 1;
  }
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc && k != "--json") usage(argv[0]);
    if (k == "--provider") a.provider = argv[++i];
    else if (k == "--sizes" || k == "--size") a.sizes = parse_sizes(argv[++i]);
    else if (k == "--seconds") a.seconds = std::strtod(argv[++i], nullptr);
    else if (k == "--window") a.window = std::atoi(argv[++i]);
    else if (k == "--span") a.span = std::strtoull(argv[++i], nullptr, 10);
    else if (k == "--completion") a.completion = argv[++i];
    else if (k == "--json") a.json = true;
    else if (k == "--target-wait") a.target_sleeps = std::string(argv[++i]) == "sread";
    else usage(argv[0]);
  }
  if (a.provider != "shm" && a.provider != "tcp") usage(argv[0]);
  if (a.completion != "both" && a.completion != "transmit" && a.completion != "delivery") {
    usage(argv[0]);
  }
  for (size_t s : a.sizes) {
    if (s == 0) usage(argv[0]);
  }
  if (a.window < 1 || a.seconds <= 0) usage(argv[0]);
  return a;
}

[[noreturn]] void die(const char* call, long rc) {
  std::fprintf(stderr, "fi_write_bw: %s failed: %s (%ld)\n", call,
               fi_strerror(static_cast<int>(-rc)), rc);
  std::exit(3);
}

// One process's libfabric objects; closed in reverse order of opening when the process exits.
struct Endpoint {
  fi_info* info = nullptr;
  fid_fabric* fabric = nullptr;
  fid_domain* domain = nullptr;
  fid_cq* cq = nullptr;
  fid_av* av = nullptr;
  fid_ep* ep = nullptr;
  fid_mr* mr = nullptr;
  std::byte* buf = nullptr;
  size_t len = 0;

  Endpoint(const std::string& provider, size_t buffer_len, bool wait_obj = false)
      : len(buffer_len) {
    fi_info* hints = fi_allocinfo();
    hints->caps = FI_RMA | FI_WRITE | FI_REMOTE_WRITE;
    hints->ep_attr->type = FI_EP_RDM;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
    hints->fabric_attr->prov_name = strdup(provider == "tcp" ? "tcp;ofi_rxm" : "shm");
    const char* node = provider == "tcp" ? "127.0.0.1" : nullptr;
    long rc = fi_getinfo(FI_VERSION(1, 17), node, nullptr, node ? FI_SOURCE : 0, hints, &info);
    fi_freeinfo(hints);
    if (rc) die("fi_getinfo", rc);
    if ((rc = fi_fabric(info->fabric_attr, &fabric, nullptr))) die("fi_fabric", rc);
    if ((rc = fi_domain(fabric, info, &domain, nullptr))) die("fi_domain", rc);
    fi_cq_attr cq_attr{};
    cq_attr.format = FI_CQ_FORMAT_CONTEXT;
    cq_attr.size = 1024;
    cq_attr.wait_obj = wait_obj ? FI_WAIT_UNSPEC : FI_WAIT_NONE;
    if ((rc = fi_cq_open(domain, &cq_attr, &cq, nullptr))) die("fi_cq_open", rc);
    fi_av_attr av_attr{};
    if ((rc = fi_av_open(domain, &av_attr, &av, nullptr))) die("fi_av_open", rc);
    if ((rc = fi_endpoint(domain, info, &ep, nullptr))) die("fi_endpoint", rc);
    if ((rc = fi_ep_bind(ep, &av->fid, 0))) die("fi_ep_bind(av)", rc);
    if ((rc = fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV))) die("fi_ep_bind(cq)", rc);
    if ((rc = fi_enable(ep))) die("fi_enable", rc);
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap", -FI_ENOMEM);
    buf = static_cast<std::byte*>(p);
    std::memset(buf, 0, len);  // touch every page before registering, as a pool would be
    if ((rc = fi_mr_reg(domain, buf, len, FI_WRITE | FI_REMOTE_WRITE, 0, 1, 0, &mr, nullptr))) {
      die("fi_mr_reg", rc);
    }
  }
  ~Endpoint() {
    fi_close(&mr->fid);
    fi_close(&ep->fid);
    fi_close(&av->fid);
    fi_close(&cq->fid);
    fi_close(&domain->fid);
    fi_close(&fabric->fid);
    fi_freeinfo(info);
    munmap(buf, len);
  }
  bool virt_addr() const { return (info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) != 0; }

  // Reads completions, appending their contexts to `done` when given; returns how many
  // (errors are fatal: this is a benchmark).
  int poll(std::vector<void*>* done = nullptr) {
    fi_cq_entry entries[64];
    ssize_t n = fi_cq_read(cq, entries, 64);
    if (n > 0) {
      for (ssize_t i = 0; done && i < n; ++i) done->push_back(entries[i].op_context);
      return static_cast<int>(n);
    }
    if (n == -FI_EAVAIL) {
      fi_cq_err_entry err{};
      fi_cq_readerr(cq, &err, 0);
      char text[256] = {};
      std::fprintf(stderr, "fi_write_bw: write failed: %s (%s)\n", fi_strerror(err.err),
                   fi_cq_strerror(cq, err.prov_errno, err.err_data, text, sizeof text));
      std::exit(3);
    }
    if (n < 0 && n != -FI_EAGAIN) die("fi_cq_read", n);
    return 0;
  }
};

// What the target publishes to the initiator, through shared memory set up before fork().
struct Shared {
  std::atomic<int> state{0};  // 0 starting, 1 published, 2 initiator done, 3 checked ok, 4 bad
  size_t addr_len = 0;
  char addr[256] = {};
  uint64_t base = 0, key = 0;
  bool virt = false;
  std::byte pattern = std::byte{0};
  size_t check_offset = 0, check_len = 0;
};

constexpr auto kTimeout = std::chrono::seconds(60);

int run_target(Shared& sh, const Args& a, size_t len, int ready_fd) {
  Endpoint e(a.provider, len, a.target_sleeps);
  sh.addr_len = sizeof sh.addr;
  if (long rc = fi_getname(&e.ep->fid, sh.addr, &sh.addr_len)) die("fi_getname", rc);
  sh.base = reinterpret_cast<uintptr_t>(e.buf);
  sh.key = fi_mr_key(e.mr);
  sh.virt = e.virt_addr();
  sh.state.store(1);
  if (write(ready_fd, "r", 1) != 1) return 3;
  auto deadline = SteadyClock::now() + kTimeout + std::chrono::duration<double>(a.seconds * 20);
  // Manual progress: the initiator's writes complete only while this loop reads the CQ.
  uint64_t wakeups = 0;
  while (sh.state.load() < 2) {
    if (a.target_sleeps) {
      fi_cq_entry entry;
      ssize_t rc = fi_cq_sread(e.cq, &entry, 1, nullptr, 100);
      if (rc != -FI_EAGAIN && rc < 0 && rc != -FI_EAVAIL) die("fi_cq_sread", rc);
      ++wakeups;
    } else {
      e.poll();
    }
    if (SteadyClock::now() > deadline) return 5;
  }
  // Every byte of the last write of the last run must be the pattern.
  for (size_t i = 0; i < sh.check_len; ++i) {
    if (e.buf[sh.check_offset + i] != sh.pattern) {
      sh.state.store(4);
      return 1;
    }
  }
  sh.state.store(3);
  if (a.target_sleeps)
    std::fprintf(stderr, "target: %llu fi_cq_sread returns\n",
                 static_cast<unsigned long long>(wakeups));
  return 0;
}

struct Figure {
  size_t size;
  const char* completion;
  double seconds;
  uint64_t writes;
  size_t last_offset;  // where the final (pattern) write landed in the target's buffer
};

// Posts one write; false on -FI_EAGAIN (the caller progresses and retries).
// The source is the same offset of our own buffer as the target's.
bool post(Endpoint& e, fi_addr_t peer, const Shared& sh, size_t offset, size_t size, uint64_t flags,
          fi_context2* context) {
  void* desc = fi_mr_desc(e.mr);
  iovec iov{e.buf + offset, size};
  fi_rma_iov rma{(sh.virt ? sh.base : 0) + offset, size, sh.key};
  fi_msg_rma msg{};
  msg.msg_iov = &iov;
  msg.desc = &desc;
  msg.iov_count = 1;
  msg.addr = peer;
  msg.rma_iov = &rma;
  msg.rma_iov_count = 1;
  msg.context = context;
  ssize_t rc = fi_writemsg(e.ep, &msg, flags);
  if (rc == -FI_EAGAIN) return false;
  if (rc) die("fi_writemsg", rc);
  return true;
}

// Keeps `window` writes in flight for a.seconds; then, once all have completed, one last write
// of the pattern (so it is the last to land) and waits for it.
Figure measure(Endpoint& e, fi_addr_t peer, Shared& sh, size_t size, bool delivery, const Args& a) {
  const uint64_t slots = std::max<uint64_t>(2, e.len / size);
  const uint64_t flags = FI_COMPLETION | (delivery ? FI_DELIVERY_COMPLETE : FI_TRANSMIT_COMPLETE);
  // A context belongs to one write until its completion returns it (completions may come out of
  // order, and the provider may use the context's space).
  std::vector<fi_context2> contexts(static_cast<size_t>(a.window));
  std::vector<void*> free_contexts;
  for (auto& c : contexts) free_contexts.push_back(&c);
  int in_flight = 0;
  uint64_t issued = 0, completed = 0;
  auto start = SteadyClock::now();
  auto stop = start + std::chrono::duration<double>(a.seconds);
  bool final_posted = false;
  size_t last_offset = 0;
  for (;;) {
    bool time_up = SteadyClock::now() >= stop;
    if (!time_up) {
      while (in_flight < a.window && post(e, peer, sh, (issued % slots) * size, size, flags,
                                          static_cast<fi_context2*>(free_contexts.back()))) {
        free_contexts.pop_back();
        ++issued;
        ++in_flight;
      }
    } else if (!final_posted && in_flight == 0) {
      std::memset(e.buf + (issued % slots) * size, static_cast<int>(sh.pattern), size);
      last_offset = (issued % slots) * size;
      if (post(e, peer, sh, last_offset, size, flags,
               static_cast<fi_context2*>(free_contexts.back()))) {
        free_contexts.pop_back();
        ++issued;
        ++in_flight;
        final_posted = true;
      }
    } else if (final_posted && in_flight == 0) {
      break;
    }
    int n = e.poll(&free_contexts);
    in_flight -= n;
    completed += static_cast<uint64_t>(n);
    if (SteadyClock::now() > stop + kTimeout) die("waiting for completions", -FI_ETIMEDOUT);
  }
  double secs = std::chrono::duration<double>(SteadyClock::now() - start).count();
  return Figure{size, delivery ? "delivery" : "transmit", secs, completed, last_offset};
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  size_t max_size = 0;
  for (size_t s : a.sizes) max_size = std::max(max_size, s);
  void* mem =
      mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 3;
  auto* sh = new (mem) Shared();
  int ready[2];
  if (pipe(ready) != 0) return 3;
  pid_t pid = fork();
  if (pid < 0) return 3;
  if (pid == 0) {
    close(ready[0]);
    _exit(run_target(*sh, a, std::max(2 * max_size, a.span), ready[1]));
  }
  close(ready[1]);
  // One byte once the target has published its address; EOF if it died first.
  char byte = 0;
  if (read(ready[0], &byte, 1) != 1 || sh->state.load() != 1) {
    std::fprintf(stderr, "fi_write_bw: the target process failed to start\n");
    waitpid(pid, nullptr, 0);
    return 3;
  }
  int rc_out = 0;
  {
    Endpoint e(a.provider, std::max(2 * max_size, a.span));
    fi_addr_t peer = FI_ADDR_UNSPEC;
    if (fi_av_insert(e.av, sh->addr, 1, &peer, 0, nullptr) != 1) die("fi_av_insert", -FI_EINVAL);
    if (!a.json) {
      std::printf("provider %s (%s), window %d, span %zu MiB, %.1f s per figure\n",
                  e.info->fabric_attr->prov_name, e.info->domain_attr->name, a.window, e.len >> 20,
                  a.seconds);
      std::printf("%-10s %-9s %10s %10s %10s %10s\n", "size", "complete", "MB/s", "GB/s",
                  "us/write", "writes");
    }
    uint8_t pattern = 1;
    for (size_t size : a.sizes) {
      for (bool delivery : {false, true}) {
        if ((delivery && a.completion == "transmit") || (!delivery && a.completion == "delivery")) {
          continue;
        }
        sh->pattern = std::byte{pattern++};
        Figure f = measure(e, peer, *sh, size, delivery, a);
        double bps = static_cast<double>(f.writes) * static_cast<double>(f.size) / f.seconds;
        double us = f.seconds * 1e6 / static_cast<double>(f.writes ? f.writes : 1);
        if (a.json) {
          std::printf(
              "{\"provider\":\"%s\",\"size\":%zu,\"completion\":\"%s\",\"window\":%d,\"span\":%zu,"
              "\"gbps\":%.3f,\"mbps\":%.1f,\"us_per_write\":%.2f,\"writes\":%llu}\n",
              a.provider.c_str(), f.size, f.completion, a.window, e.len, bps / 1e9, bps / 1e6, us,
              static_cast<unsigned long long>(f.writes));
        } else {
          std::printf("%-10zu %-9s %10.1f %10.3f %10.2f %10llu\n", f.size, f.completion, bps / 1e6,
                      bps / 1e9, us, static_cast<unsigned long long>(f.writes));
        }
        std::fflush(stdout);
        // The target checks the final figure's last write at exit (earlier ones are overwritten).
        sh->check_len = f.size;
        sh->check_offset = f.last_offset;
      }
    }
    sh->state.store(2);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || sh->state.load() != 3) {
    std::fprintf(stderr,
                 "fi_write_bw: the target did not find the last write's bytes (status %d)\n",
                 status);
    rc_out = 1;
  }
  return rc_out;
}
