// Observer: watches the registrations (`/kvrdma/<cluster>/nodes/`) with its own etcd client and
// records when each one vanished, i.e. when etcd expired a dead node's lease. cluster_sim's
// control-plane mode uses it to split a failover's time into etcd's part and the cluster's.
//
// Thread-safety: gone_at() may be called from any thread; the watching runs on the observer's
// own thread, stopped (and joined) by the destructor. mu_ guards the records.
#pragma once

#include <charconv>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster/meta_store.h"

namespace cluster_sim {

class Observer {
 public:
  using Steady = std::chrono::steady_clock;

  // Connects to etcd and starts watching every key under `prefix` ("/kvrdma/<cluster>/nodes/").
  static kvrdma::Result<std::unique_ptr<Observer>> start(const std::vector<std::string>& endpoints,
                                                         const std::string& prefix) {
    auto etcd = kvrdma::cluster::connect_etcd(endpoints, std::chrono::seconds(3));
    if (!etcd) return etcd.status();
    std::unique_ptr<Observer> o(new Observer(std::move(*etcd), prefix));
    o->thread_ = std::thread([p = o.get()] { p->loop(); });
    return o;
  }
  ~Observer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    etcd_->cancel_waits();
    thread_.join();
  }
  Observer(const Observer&) = delete;
  Observer& operator=(const Observer&) = delete;

  // When node `id`'s registration was first seen gone after having been seen; waits up to
  // `patience` for it. nullopt when it has not gone.
  std::optional<Steady::time_point> gone_at(uint32_t id, std::chrono::milliseconds patience) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, patience, [&] { return gone_.count(id) > 0; });
    auto it = gone_.find(id);
    if (it == gone_.end()) return std::nullopt;
    return it->second;
  }

 private:
  Observer(std::unique_ptr<kvrdma::cluster::MetaStore> etcd, std::string prefix)
      : etcd_(std::move(etcd)), prefix_(std::move(prefix)) {}

  void loop() {
    std::set<uint32_t> seen;
    int64_t revision = 0;  // the last range's
    for (int i = 0; i < 100'000'000; ++i) {
      {
        std::lock_guard lock(mu_);
        if (stop_) return;
      }
      auto r = etcd_->range(prefix_);
      const auto now = Steady::now();
      if (r) {
        std::set<uint32_t> present;
        for (const auto& e : r->entries) {
          uint32_t id = 0;
          const char* first = e.key.data() + prefix_.size();
          if (std::from_chars(first, e.key.data() + e.key.size(), id).ec == std::errc()) {
            present.insert(id);
          }
        }
        std::lock_guard lock(mu_);
        for (uint32_t id : seen) {
          if (present.count(id) == 0 && gone_.count(id) == 0) gone_[id] = now;
        }
        seen.insert(present.begin(), present.end());
        revision = r->revision;
        cv_.notify_all();
      }
      // Wakes at the next change (or returns after the timeout when etcd is unreachable).
      (void)etcd_->wait_for_change(prefix_, revision, std::chrono::milliseconds(500));
    }
  }

  const std::unique_ptr<kvrdma::cluster::MetaStore> etcd_;
  const std::string prefix_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;                   // a registration gone
  bool stop_ = false;                            // guarded by mu_
  std::map<uint32_t, Steady::time_point> gone_;  // guarded by mu_
};

}  // namespace cluster_sim
