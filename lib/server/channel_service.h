// ChannelService: the server end of the request channel (docs/design.md, "Request channel"). One
// thread takes requests from every session's link, executes them with the same KvService logic
// the gRPC handlers call (serve_get, serve_get_many, serve_put, serve_delete), and completes each
// into its slot. It polls for --poll-us after its last request, then sleeps on the link host's
// doorbell (a client rings only when it sees NEED_WAKEUP), so an idle server costs no CPU.
//
// Every request byte is untrusted: decoded by the codec against the slot size; a request that
// fails to decode is answered INVALID_ARGUMENT (the slot and generation the link saw). The
// session is the credential (Hello checked the token); a link is dropped when its session ends.
// Thread-safety: open() is called from gRPC threads (Hello); start/stop from the server.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "channel/link.h"
#include "server/service.h"

namespace kvrdma::server {

class ChannelService {
 public:
  // The channel thread's name (tests count its wake-ups in /proc).
  static constexpr const char* kThreadName = "kvrdma-channel";

  // Starts the channel thread with a link host for the server's transport and sets
  // core.open_channel. FAILED_PRECONDITION when the transport has no channel link yet (the
  // server then runs without a channel: every Hello offer is refused).
  static Result<std::unique_ptr<ChannelService>> start(ServerCore& core, KvService& service);
  // Stops and joins the thread; pending completions of transport writes may still run later
  // (they hold their link). Call after gRPC stopped (no Hello can open a link any more).
  ~ChannelService();

  ChannelService(const ChannelService&) = delete;
  ChannelService& operator=(const ChannelService&) = delete;

  // Wake-ups of the channel thread so far (for the idle-cost test).
  uint64_t wakeups() const { return wakeups_.load(std::memory_order_relaxed); }

  struct Entry;  // one session's link (channel_service.cc)

 private:
  ChannelService(ServerCore& core, KvService& service, std::unique_ptr<channel::LinkHost> host);
  Status open(std::shared_ptr<Session> session, std::string_view offer, std::string* accept);
  void run();
  // One pass over every link; returns how many requests it took.
  size_t scan();
  void serve(const std::shared_ptr<Entry>& entry, const channel::IncomingRequest& in);

  ServerCore& core_;
  KvService& service_;
  std::unique_ptr<channel::LinkHost> host_;
  std::mutex mu_;
  std::vector<std::shared_ptr<Entry>> added_;  // guarded by mu_: opened, not yet adopted
  std::vector<std::shared_ptr<Entry>> links_;  // the thread's own
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> wakeups_{0};
  std::thread thread_;
};

}  // namespace kvrdma::server
