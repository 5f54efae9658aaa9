// CountingStore: the MetaStore one simulated node of cluster_sim's control-plane mode talks to
// etcd through. It forwards every call to the node's own etcd client (connect_etcd), counts the
// calls by kind (what the node costs etcd), remembers the last keepalive etcd answered, and has a
// kill switch: once killed every call fails UNAVAILABLE without reaching etcd, so the node's
// keepalives stop and etcd expires its lease, which is how etcd sees a node die.
//
// Thread-safe: every method may be called from any thread (the agent's, the keepalive's, the
// mover's and the bench's). Counters are atomics; mu_ guards only the killed-wait bookkeeping.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "cluster/meta_store.h"

namespace cluster_sim {

// The kinds of etcd request a node makes; each call of the kind is one etcd request (a Txn for
// create and compare-and-swap, one message on the keepalive stream, one Watch stream per wait).
enum class Op { kGrant, kKeepAlive, kRevoke, kCreate, kCas, kPut, kErase, kRange, kWatch, kCount };

inline const char* op_name(Op op) {
  static const char* const kNames[] = {"grant", "keepalive", "revoke", "create", "cas",
                                       "put",   "erase",     "range",  "watch"};
  return kNames[static_cast<int>(op)];
}

using OpCounts = std::array<uint64_t, static_cast<size_t>(Op::kCount)>;

class CountingStore final : public kvrdma::cluster::MetaStore {
 public:
  explicit CountingStore(std::unique_ptr<kvrdma::cluster::MetaStore> inner)
      : inner_(std::move(inner)) {}

  // From now on every call fails with UNAVAILABLE (waits end only at their timeout). One way.
  void kill() { killed_.store(true); }
  bool killed() const { return killed_.load(); }

  // Calls forwarded to etcd so far, by kind.
  OpCounts counts() const {
    OpCounts out{};
    for (size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load();
    return out;
  }
  // When etcd last confirmed this node's lease (steady clock; epoch when never).
  std::chrono::steady_clock::time_point last_keepalive() const {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(last_keepalive_.load()));
  }

  kvrdma::Result<kvrdma::cluster::LeaseId> grant_lease(std::chrono::milliseconds ttl) override {
    if (!count(Op::kGrant)) return dead();
    return inner_->grant_lease(ttl);
  }
  kvrdma::Status keep_alive(kvrdma::cluster::LeaseId lease) override {
    if (!count(Op::kKeepAlive)) return dead();
    kvrdma::Status s = inner_->keep_alive(lease);
    if (s.is_ok())
      last_keepalive_.store(std::chrono::steady_clock::now().time_since_epoch().count());
    return s;
  }
  kvrdma::Status revoke(kvrdma::cluster::LeaseId lease) override {
    if (!count(Op::kRevoke)) return dead();
    return inner_->revoke(lease);
  }
  kvrdma::Result<bool> create(std::string_view key, std::string_view value,
                              kvrdma::cluster::LeaseId lease,
                              kvrdma::cluster::MetaEntry* existing) override {
    if (!count(Op::kCreate)) return dead();
    return inner_->create(key, value, lease, existing);
  }
  kvrdma::Result<bool> compare_and_swap(std::string_view key, int64_t expected_mod_revision,
                                        std::string_view value,
                                        kvrdma::cluster::LeaseId lease) override {
    if (!count(Op::kCas)) return dead();
    return inner_->compare_and_swap(key, expected_mod_revision, value, lease);
  }
  kvrdma::Status put(std::string_view key, std::string_view value,
                     kvrdma::cluster::LeaseId lease) override {
    if (!count(Op::kPut)) return dead();
    return inner_->put(key, value, lease);
  }
  kvrdma::Status erase(std::string_view key) override {
    if (!count(Op::kErase)) return dead();
    return inner_->erase(key);
  }
  kvrdma::Result<kvrdma::cluster::MetaRange> range(std::string_view prefix) override {
    if (!count(Op::kRange)) return dead();
    return inner_->range(prefix);
  }
  kvrdma::Result<int64_t> wait_for_change(std::string_view prefix, int64_t after_revision,
                                          std::chrono::milliseconds timeout) override {
    if (count(Op::kWatch)) return inner_->wait_for_change(prefix, after_revision, timeout);
    // Dead: fail no sooner than the timeout, as an unreachable etcd does (callers may loop).
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [this] { return cancelled_; });
    if (cancelled_) return after_revision;
    return dead();
  }
  void cancel_waits() override {
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
    }
    cv_.notify_all();
    inner_->cancel_waits();
  }
  uint64_t requests() const override {
    uint64_t n = 0;
    for (const auto& c : counts_) n += c.load();
    return n;
  }
  std::string describe() const override { return inner_->describe(); }

 private:
  // Counts a call about to reach etcd; false (not counted) once killed.
  bool count(Op op) {
    if (killed_.load()) return false;
    counts_[static_cast<size_t>(op)].fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  kvrdma::Status dead() const {
    return kvrdma::Status(kvrdma::Code::kUnavailable,
                          "cluster_sim killed this node: its etcd client answers nothing");
  }

  const std::unique_ptr<kvrdma::cluster::MetaStore> inner_;
  std::atomic<bool> killed_{false};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Op::kCount)> counts_{};
  std::atomic<std::chrono::steady_clock::rep> last_keepalive_{0};
  std::mutex mu_;
  std::condition_variable cv_;  // cancel_waits: wakes the waits of a killed node
  bool cancelled_ = false;      // guarded by mu_
};

}  // namespace cluster_sim
