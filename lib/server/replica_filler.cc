#include "server/replica_filler.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/logging.h"

namespace kvrdma::server {

using cluster::kNoNode;
using cluster::kSlots;
using Steady = std::chrono::steady_clock;

namespace {

constexpr auto kCallTime = std::chrono::seconds(5);
constexpr auto kRetryAfter = std::chrono::milliseconds(200);
constexpr auto kIdleWake = std::chrono::seconds(1);
constexpr size_t kFillStreams = 4;

}  // namespace

ReplicaFiller::ReplicaFiller(ServerCore& core, uint32_t self,
                             std::function<Status(uint64_t)> write_filled)
    : core_(core), self_(self), write_filled_(std::move(write_filled)) {
  thread_ = std::thread([this, l = &log::current()] {
    log::Scope s(l);
    loop();
  });
}

ReplicaFiller::~ReplicaFiller() { stop(); }

void ReplicaFiller::notify() {
  {
    std::lock_guard lock(mu_);
    ++wakes_;
  }
  cv_.notify_all();
}

void ReplicaFiller::reset() {
  {
    std::lock_guard lock(mu_);
    filled_.clear();
    filled_written_ = 0;
    ++wakes_;
  }
  cv_.notify_all();
}

void ReplicaFiller::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool ReplicaFiller::stopping() const {
  std::lock_guard lock(mu_);
  return stop_;
}

void ReplicaFiller::loop() {
  uint64_t seen = 0;
  Outcome last = Outcome::kIdle;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (last != Outcome::kProgress) {
        cv_.wait_for(lock, last == Outcome::kRetry ? kRetryAfter : kIdleWake,
                     [&] { return stop_ || wakes_ != seen; });
      }
      if (stop_) return;
      seen = wakes_;
    }
    last = round(*core_.cluster->map());
  }
}

ReplicaFiller::Outcome ReplicaFiller::round(const cluster::SlotMap& m) {
  if (!core_.cluster->serving() || m.owner.empty() || !m.has_replicas()) return Outcome::kIdle;
  std::map<uint32_t, std::vector<bool>> pending;  // replica -> slots to fill there
  bool unready = false;
  {
    std::lock_guard lock(mu_);
    // A fill counts only for the map it ran under: between two maps a replica may have left
    // the slot and come back empty (it drops what it held when it joins), and this node need
    // not have seen the map in between. filled/<id> = epoch then vouches for fills done in it.
    if (m.epoch != filled_epoch_) {
      filled_.clear();
      filled_epoch_ = m.epoch;
    }
    std::set<uint64_t> present;
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (m.owner_of(s) != self_) continue;
      // A slot moving out is not filled from here: the mover erases its keys here as they go
      // over, so a fill would miss some, and the controller does not count fills of moving
      // slots (rule 5). Its next owner fills the replicas once it owns the slot.
      if (m.next_owner_of(s) != kNoNode) continue;
      for (uint32_t i = 0; i < m.seats(); ++i) {
        const uint32_t r = m.replica_of(s, i);
        if (r == kNoNode) continue;
        present.insert(pair(s, r));
        if (m.replica_ready_of(s, i)) continue;
        unready = true;
        if (filled_.count(pair(s, r)) > 0) continue;
        auto& slots = pending[r];
        if (slots.empty()) slots.assign(kSlots, false);
        slots[s] = true;
      }
    }
    std::erase_if(filled_, [&](uint64_t p) { return present.count(p) == 0; });
    if (pending.empty()) {
      if (!unready || filled_written_ == m.epoch) return Outcome::kIdle;
    }
  }
  if (pending.empty()) {
    Status s = write_filled_(m.epoch);
    if (!s.is_ok()) {
      KVRDMA_LOG_WARN("cannot record the replicas filled in map epoch {}: {}; retrying", m.epoch,
                      s.to_string());
      return Outcome::kRetry;
    }
    std::lock_guard lock(mu_);
    filled_written_ = m.epoch;
    return Outcome::kIdle;
  }
  for (auto& [node, slots] : pending) {
    Status s = fill(m, node, slots);
    if (!s.is_ok()) {
      if (!stopping())
        KVRDMA_LOG_WARN("filling replica node {}: {}; retrying", node, s.to_string());
      return Outcome::kRetry;
    }
    std::lock_guard lock(mu_);
    if (core_.cluster->map()->epoch != m.epoch) return Outcome::kProgress;  // fill again
    for (uint32_t slot = 0; slot < kSlots; ++slot) {
      if (slots[slot]) filled_.insert(pair(slot, node));
    }
  }
  return Outcome::kProgress;  // the next round writes filled/<id>
}

Status ReplicaFiller::fill(const cluster::SlotMap& m, uint32_t node,
                           const std::vector<bool>& slots) {
  const auto started = Steady::now();
  Replication& rep = *core_.replication;
  auto keys =
      core_.store->keys_where([&](std::string_view k) { return slots[cluster::slot_of(k)]; });
  std::atomic<uint64_t> copied{0}, bytes{0};
  std::atomic<size_t> next{0};
  std::mutex failed_mu;
  Status failed;  // guarded by failed_mu: the first failure ends every stream
  auto fail = [&](Status s) {
    std::lock_guard lock(failed_mu);
    if (failed.is_ok()) failed = std::move(s);
  };
  auto has_failed = [&] {
    std::lock_guard lock(failed_mu);
    return !failed.is_ok();
  };
  // Several keys in flight at once: one at a time left each push's round trip idle.
  auto stream = [&] {
    for (size_t i = next++; i < keys.size() && !has_failed(); i = next++) {
      if (stopping() || !core_.cluster->serving()) {
        return fail(Status(Code::kUnavailable, "the node is stopping or lost its lease"));
      }
      const std::string& key = keys[i];
      // The value and its version are read together under the key's order: read apart, a live
      // write in between paired the old value with the new version, and the replica then took
      // the stale value and refused the live push of that version (same version: not newer), or
      // took a deleted value back over its tombstone.
      std::optional<store::ValueRef> ref;
      uint64_t version = 0;
      rep.versions().with_key(key, [&](uint64_t current) -> uint64_t {
        auto got = core_.store->get(key);
        if (got) ref = std::move(*got);
        version = current;
        return 0;  // unchanged
      });
      if (!ref) continue;  // deleted or expired since listed: a delete is pushed live
      // A key with no version here (moved in, or stored before the map had replicas) goes at
      // the lowest one: any live write pushed meanwhile is newer and wins at the replica.
      version = std::max<uint64_t>(version, 1);
      Status s =
          rep.push_to(node, cluster::slot_of(key), key, &*ref, version, Steady::now() + kCallTime);
      if (!s.is_ok()) return fail(std::move(s));
      ++copied;
      bytes += ref->size();
    }
  };
  std::vector<std::thread> streams;
  const log::Logger* logger = &log::current();
  for (size_t t = 1; t < kFillStreams && t < keys.size(); ++t) {
    streams.emplace_back([&, logger] {
      log::Scope scope(logger);
      stream();
    });
  }
  stream();
  for (auto& t : streams) t.join();
  if (has_failed()) return failed;
  keys_ += copied;
  bytes_ += bytes;
  const double secs = std::chrono::duration<double>(Steady::now() - started).count();
  KVRDMA_LOG_INFO("filled replica node {} with {} keys ({} bytes, {:.3f} GB/s) of map epoch {}",
                  node, copied.load(), bytes.load(), secs > 0 ? bytes / secs / 1e9 : 0.0, m.epoch);
  return Status();
}

}  // namespace kvrdma::server
