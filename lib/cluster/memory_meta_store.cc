// MemoryMetaStore: the MetaStore contract in one process, for unit tests. One mutex guards all
// state; one condition variable wakes waiters on every change, on cancel_waits and on a change of
// reachability. Leases expire lazily: on every call and while a waiter sleeps (its wait ends no
// later than the earliest lease deadline), so a test can wait for a lease to lapse.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>

#include "cluster/meta_store.h"

namespace kvrdma::cluster {
namespace {

using Clock = std::chrono::steady_clock;

// Changes kept for wait_for_change; an older after_revision is treated like an etcd compaction
// (the waiter gets the current revision and re-reads).
constexpr size_t kMaxLog = 100'000;

class MemoryStore final : public MemoryMetaStore {
 public:
  Result<LeaseId> grant_lease(std::chrono::milliseconds ttl) override {
    std::lock_guard lock(mu_);
    KVRDMA_RETURN_IF_ERROR(begin_call_locked("LeaseGrant"));
    if (ttl.count() <= 0) {
      return Status(Code::kInvalidArgument,
                    fmt::format("lease TTL {} ms is not positive; pass a TTL above 0",
                                ttl.count()));
    }
    // Whole seconds, rounded up, as etcd counts them.
    auto seconds = std::chrono::ceil<std::chrono::seconds>(ttl);
    LeaseId id = next_lease_++;
    leases_[id] = Lease{seconds, Clock::now() + seconds, {}};
    return id;
  }

  Status keep_alive(LeaseId lease) override {
    std::lock_guard lock(mu_);
    KVRDMA_RETURN_IF_ERROR(begin_call_locked("LeaseKeepAlive"));
    auto it = leases_.find(lease);
    if (it == leases_.end()) return lease_gone(lease);
    it->second.deadline = Clock::now() + it->second.ttl;
    return Status::ok();
  }

  Status revoke(LeaseId lease) override {
    std::lock_guard lock(mu_);
    KVRDMA_RETURN_IF_ERROR(begin_call_locked("LeaseRevoke"));
    end_lease_locked(lease);
    return Status::ok();
  }

  Result<bool> create(std::string_view key, std::string_view value, LeaseId lease,
                      MetaEntry* existing) override {
    std::lock_guard lock(mu_);
    KVRDMA_RETURN_IF_ERROR(begin_call_locked("Txn"));
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      if (existing != nullptr) *existing = it->second;
      return false;
    }
    KVRDMA_RETURN_IF_ERROR(put_locked(key, value, lease));
    return true;
  }

  Result<bool> compare_and_swap(std::string_view key, int64_t expected_mod_revision,
                                std::string_view value, LeaseId lease) override {
    std::lock_guard lock(mu_);
    KVRDMA_RETURN_IF_ERROR(begin_call_locked("Txn"));
    auto it = entries_.find(key);
    int64_t current = it == entries_.end() ? 0 : it->second.mod_revision;
    if (current != expected_mod_revision) return false;
    KVRDMA_RETURN_IF_ERROR(put_locked(key, value, lease));
    return true;
  }

  Status put(std::string_view key, std::string_view value, LeaseId lease) override {
    std::lock_guard lock(mu_);
    KVRDMA_RETURN_IF_ERROR(begin_call_locked("Put"));
    return put_locked(key, value, lease);
  }

  Status erase(std::string_view key) override {
    std::lock_guard lock(mu_);
    KVRDMA_RETURN_IF_ERROR(begin_call_locked("DeleteRange"));
    auto it = entries_.find(key);
    if (it == entries_.end()) return Status::ok();
    ++revision_;
    erase_locked(it);
    cv_.notify_all();
    return Status::ok();
  }

  Result<MetaRange> range(std::string_view prefix) override {
    std::lock_guard lock(mu_);
    KVRDMA_RETURN_IF_ERROR(begin_call_locked("Range"));
    MetaRange out;
    out.revision = revision_;
    for (auto it = entries_.lower_bound(prefix);
         it != entries_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      out.entries.push_back(it->second);
    }
    return out;
  }

  Result<int64_t> wait_for_change(std::string_view prefix, int64_t after_revision,
                                  std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mu_);
    ++requests_;
    const auto deadline = Clock::now() + timeout;
    while (true) {
      if (cancelled_) return after_revision;
      if (unreachable_) {
        // Block for the timeout (callers loop on UNAVAILABLE), waking early only for cancel.
        cv_.wait_until(lock, deadline, [&] { return cancelled_ || !unreachable_; });
        if (cancelled_) return after_revision;
        if (unreachable_ || Clock::now() >= deadline) return unreachable_status("Watch");
        continue;
      }
      expire_leases_locked();
      if (int64_t seen = newest_change_locked(prefix, after_revision); seen > after_revision) {
        return seen;
      }
      auto now = Clock::now();
      if (now >= deadline) return after_revision;
      // Wake for the earliest lease deadline too: its expiry is a change nobody else signals.
      auto until = deadline;
      for (const auto& [id, l] : leases_) until = std::min(until, l.deadline);
      cv_.wait_until(lock, until);
    }
  }

  void cancel_waits() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }

  uint64_t requests() const override { return requests_.load(); }
  std::string describe() const override { return "in-memory"; }

  void expire_lease(LeaseId lease) override {
    std::lock_guard lock(mu_);
    end_lease_locked(lease);
  }

  void set_unreachable(bool unreachable) override {
    std::lock_guard lock(mu_);
    unreachable_ = unreachable;
    cv_.notify_all();
  }

 private:
  struct Lease {
    std::chrono::seconds ttl;
    Clock::time_point deadline;
    std::set<std::string, std::less<>> keys;
  };
  using Entries = std::map<std::string, MetaEntry, std::less<>>;

  Status begin_call_locked(const char* what) {
    ++requests_;
    if (unreachable_) return unreachable_status(what);
    expire_leases_locked();
    return Status::ok();
  }

  static Status unreachable_status(const char* what) {
    return Status(Code::kUnavailable,
                  fmt::format("{} on the in-memory meta store failed: the store is set unreachable "
                              "(a test stands in for etcd being down); retry later",
                              what));
  }

  static Status lease_gone(LeaseId lease) {
    return Status(Code::kNotFound,
                  fmt::format("lease {:x} is gone (expired or revoked); stop acting on what it "
                              "guarded and register again",
                              lease));
  }

  Status put_locked(std::string_view key, std::string_view value, LeaseId lease) {
    if (lease != 0 && leases_.find(lease) == leases_.end()) return lease_gone(lease);
    ++revision_;
    auto [it, inserted] = entries_.try_emplace(std::string(key));
    MetaEntry& e = it->second;
    if (inserted) {
      e.key = std::string(key);
      e.create_revision = revision_;
    } else if (e.lease != 0 && e.lease != lease) {
      if (auto old = leases_.find(e.lease); old != leases_.end()) old->second.keys.erase(e.key);
    }
    e.value = std::string(value);
    e.mod_revision = revision_;
    e.lease = lease;
    if (lease != 0) leases_[lease].keys.insert(e.key);
    log_locked(e.key);
    cv_.notify_all();
    return Status::ok();
  }

  // Removes an entry at the current revision_ (the caller has bumped it).
  void erase_locked(Entries::iterator it) {
    if (it->second.lease != 0) {
      if (auto l = leases_.find(it->second.lease); l != leases_.end()) {
        l->second.keys.erase(it->first);
      }
    }
    log_locked(it->first);
    entries_.erase(it);
  }

  // Ends a lease and deletes its keys in one revision, as etcd does. No-op for an unknown lease.
  void end_lease_locked(LeaseId lease) {
    auto l = leases_.find(lease);
    if (l == leases_.end()) return;
    std::set<std::string, std::less<>> keys = std::move(l->second.keys);
    leases_.erase(l);
    if (keys.empty()) return;
    ++revision_;
    for (const auto& k : keys) {
      if (auto it = entries_.find(k); it != entries_.end()) {
        it->second.lease = 0;  // the lease is already gone
        erase_locked(it);
      }
    }
    cv_.notify_all();
  }

  void expire_leases_locked() {
    auto now = Clock::now();
    std::vector<LeaseId> due;
    for (const auto& [id, l] : leases_) {
      if (l.deadline <= now) due.push_back(id);
    }
    for (LeaseId id : due) end_lease_locked(id);
  }

  void log_locked(const std::string& key) {
    log_.push_back({revision_, key});
    if (log_.size() > kMaxLog) {
      compacted_ = log_.front().first;
      log_.pop_front();
    }
  }

  // The newest revision above after_revision that changed a key under prefix, or after_revision.
  int64_t newest_change_locked(std::string_view prefix, int64_t after_revision) const {
    if (after_revision < compacted_) return revision_;  // history gone: make the caller re-read
    for (auto it = log_.rbegin(); it != log_.rend() && it->first > after_revision; ++it) {
      if (it->second.compare(0, prefix.size(), prefix) == 0) return it->first;
    }
    return after_revision;
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Entries entries_;                                  // guarded by mu_
  std::map<LeaseId, Lease> leases_;                  // guarded by mu_
  std::deque<std::pair<int64_t, std::string>> log_;  // (revision, key) changes; guarded by mu_
  int64_t compacted_ = 0;                            // newest revision dropped from log_
  int64_t revision_ = 1;                             // etcd's first revision is 1 too
  LeaseId next_lease_ = 0x1000;
  bool unreachable_ = false;
  bool cancelled_ = false;
  std::atomic<uint64_t> requests_{0};
};

}  // namespace

std::shared_ptr<MemoryMetaStore> MemoryMetaStore::create() {
  return std::make_shared<MemoryStore>();
}

}  // namespace kvrdma::cluster
