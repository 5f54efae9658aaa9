#include "server/session.h"

#include <fmt/format.h>

#include <sys/random.h>

#include <random>

#include "rpc/status_map.h"

namespace kvrdma::server {
namespace {

int64_t now_ns() {
  return std::chrono::steady_clock::now().time_since_epoch() / std::chrono::nanoseconds(1);
}

}  // namespace

Result<std::shared_ptr<Session>> SessionTable::add(uint64_t client_id,
                                                   std::shared_ptr<transport::Peer> peer,
                                                   std::shared_ptr<transport::RemoteRegion> region,
                                                   size_t max_sessions, uint32_t peer_node) {
  auto s = std::make_shared<Session>();
  s->client_id = client_id;
  s->peer_node = peer_node;
  s->peer = std::move(peer);
  s->region = std::move(region);
  s->last_seen_ns = now_ns();
  std::lock_guard lock(mu_);
  if (sessions_.size() >= max_sessions) {
    return Status(Code::kResourceExhausted,
                  fmt::format("kv-server already has {} client sessions "
                              "(ServerOptions::max_sessions / max-sessions {}); close idle "
                              "clients or raise the limit",
                              sessions_.size(), max_sessions));
  }
  // The id is the session's only credential besides the token: take it from the kernel's CSPRNG
  // (an mt19937 stream can be predicted from a few outputs).
  do {
    if (getrandom(&s->id, sizeof s->id, 0) != static_cast<ssize_t>(sizeof s->id)) {
      static thread_local std::mt19937_64 rng{std::random_device{}()};
      s->id = rng() ^ static_cast<uint64_t>(std::random_device{}());
    }
  } while (s->id == 0 || sessions_.count(s->id) != 0);
  sessions_.emplace(s->id, s);
  return s;
}

Result<std::shared_ptr<Session>> SessionTable::find(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) {
    return rpc::session_lost(id,
                             fmt::format("unknown or expired session {}; reconnect (Hello)", id));
  }
  it->second->last_seen_ns = now_ns();
  return it->second;
}

bool SessionTable::remove(uint64_t id) {
  std::shared_ptr<Session> gone;
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return false;
  gone = std::move(it->second);
  sessions_.erase(it);
  return true;
}

size_t SessionTable::expire(SteadyTime now) {
  std::vector<std::shared_ptr<Session>> gone;
  int64_t limit =
      now.time_since_epoch() / std::chrono::nanoseconds(1) - lease_ / std::chrono::nanoseconds(1);
  {
    std::lock_guard lock(mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second->last_seen_ns.load() < limit) {
        gone.push_back(std::move(it->second));
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  return gone.size();  // reservations are freed as `gone` goes, outside the lock
}

size_t SessionTable::expire_reservations(SteadyTime now) {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, s] : sessions_) all.push_back(s);
  }
  size_t n = 0;
  for (auto& s : all) {
    std::lock_guard lock(s->mu);
    for (auto it = s->reservations.begin(); it != s->reservations.end();) {
      if (it->second.expires <= now) {
        it = s->reservations.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
  }
  return n;
}

size_t SessionTable::size() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

size_t SessionTable::reservations() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [id, s] : sessions_) {
    std::lock_guard slock(s->mu);
    n += s->reservations.size();
  }
  return n;
}

}  // namespace kvrdma::server
