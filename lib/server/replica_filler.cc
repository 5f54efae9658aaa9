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
constexpr size_t kFillStreams = 4;

}  // namespace

ReplicaFiller::ReplicaFiller(ServerCore& core, uint32_t self,
                             std::function<Status(uint64_t)> write_filled)
    : core_(core), self_(self), write_filled_(std::move(write_filled)) {
  loop_ = std::make_unique<RoundLoop>([this] { return round(*core_.cluster->map()); });
}

ReplicaFiller::~ReplicaFiller() { stop(); }

void ReplicaFiller::notify() { loop_->notify(); }

std::set<uint64_t> ReplicaFiller::fill_pairs(const cluster::SlotMap& m) const {
  std::set<uint64_t> out;
  for (uint32_t s = 0; s < kSlots && !m.owner.empty(); ++s) {
    if (m.owner_of(s) != self_) continue;
    // A slot moving out is not filled from here: the mover erases its keys here as they go
    // over, so a fill would miss some, and the controller does not count fills of moving
    // slots (rule 5). Its next owner fills the replicas once it owns the slot.
    if (m.next_owner_of(s) != kNoNode) continue;
    for (uint32_t i = 0; i < m.seats(); ++i) {
      if (const uint32_t r = m.replica_of(s, i); r != kNoNode) out.insert(pair(s, r));
    }
  }
  return out;
}

void ReplicaFiller::map_installed(const cluster::SlotMap& before, const cluster::SlotMap& next) {
  const std::set<uint64_t> keep = next.has_replicas() ? fill_pairs(next) : std::set<uint64_t>{};
  {
    std::lock_guard lock(mu_);
    if (next.epoch <= filled_epoch_) return;  // carried already (the same map by another path)
    if (next.epoch == before.epoch + 1 && filled_epoch_ == before.epoch) {
      std::erase_if(filled_, [&](uint64_t p) { return keep.count(p) == 0; });
      std::erase_if(filling_, [&](uint64_t p) { return keep.count(p) == 0; });
    } else {
      filled_.clear();
      filling_.clear();
    }
    filled_epoch_ = next.epoch;
  }
  loop_->notify();
}

void ReplicaFiller::forget_written() {
  {
    std::lock_guard lock(mu_);
    filled_written_ = 0;
  }
  loop_->notify();
}

void ReplicaFiller::reset() {
  {
    std::lock_guard lock(mu_);
    filled_.clear();
    filling_.clear();  // a fill running now counts for nothing
    filled_written_ = 0;
  }
  loop_->notify();
}

void ReplicaFiller::stop() { loop_->stop(); }

bool ReplicaFiller::stopping() const { return loop_->stopping(); }

ReplicaFiller::Outcome ReplicaFiller::round(const cluster::SlotMap& m) {
  if (!core_.cluster->serving() || m.owner.empty() || !m.has_replicas()) return Outcome::kIdle;
  std::map<uint32_t, std::vector<bool>> pending;  // replica -> slots to fill there
  const std::set<uint64_t> present = fill_pairs(m);
  bool unready = false;
  {
    std::lock_guard lock(mu_);
    // map_installed() carries the fills from map to map; it runs before a map is in force, so a
    // map older than the fills' is one being replaced (the round after it looks again), and a
    // newer one came some other way: whatever this node filled may be gone.
    if (m.epoch < filled_epoch_) return Outcome::kIdle;
    if (m.epoch > filled_epoch_) {
      filled_.clear();
      filling_.clear();
      filled_epoch_ = m.epoch;
    }
    for (uint64_t p : present) {
      const uint32_t s = uint32_t(p >> 32), r = uint32_t(p);
      bool ready = false;
      for (uint32_t i = 0; i < m.seats(); ++i)
        ready |= m.replica_of(s, i) == r && m.replica_ready_of(s, i);
      if (ready) continue;
      unready = true;
      if (filled_.count(p) > 0) continue;
      auto& slots = pending[r];
      if (slots.empty()) slots.assign(kSlots, false);
      slots[s] = true;
      filling_.insert(p);
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
    if (filled_epoch_ == m.epoch) filled_written_ = m.epoch;
    return Outcome::kIdle;
  }
  for (auto& [node, slots] : pending) {
    Status s = fill(m, node, slots);
    std::lock_guard lock(mu_);
    // What is still in filling_ kept its seat in every map installed meanwhile.
    for (uint32_t slot = 0; slot < kSlots; ++slot) {
      if (!slots[slot]) continue;
      if (s.is_ok() && filling_.count(pair(slot, node)) > 0) filled_.insert(pair(slot, node));
      filling_.erase(pair(slot, node));
    }
    if (!s.is_ok()) {
      filling_.clear();  // only this round's pairs: the next round lists them again
      if (!stopping())
        KVRDMA_LOG_WARN("filling replica node {}: {}; retrying", node, s.to_string());
      return Outcome::kRetry;
    }
    if (core_.cluster->map()->epoch != m.epoch) {
      filling_.clear();  // the rest is listed again by the new map's round
      return Outcome::kProgress;
    }
  }
  return Outcome::kProgress;  // the next round writes filled/<id>
}

Status ReplicaFiller::fill(const cluster::SlotMap& m, uint32_t node,
                           const std::vector<bool>& slots) {
  const auto started = Steady::now();
  Replication& rep = *core_.replication;
  // The replica drops what it holds of these slots first: it may hold keys deleted here while
  // it had no seat (a map it never installed), which a fill alone would leave there. Live
  // writes pushed meanwhile and every key listed below reach it after the drop.
  {
    const cluster::NodeInfo* peer = m.node(node);
    if (peer == nullptr) return Status(Code::kUnavailable, fmt::format("node {} left", node));
    auto session = rep.session(*peer);
    if (!session) return session.status();
    std::vector<uint32_t> list;
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (slots[s]) list.push_back(s);
    }
    if (stopping() || !core_.cluster->serving()) {
      return Status(Code::kUnavailable, "the node is stopping or lost its lease");
    }
    KVRDMA_RETURN_IF_ERROR(
        (*session)->drop_replica_slots(list, m.epoch, Steady::now() + kCallTime));
  }
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
      // the stale value and refused the live push of that version, or took a deleted value
      // back over its tombstone.
      auto copy = rep.copy_for_fill(key);
      if (!copy) continue;  // deleted or expired since listed: a delete is pushed live
      const store::ValueRef* ref = &copy->ref;
      Status s = rep.push_to(node, cluster::slot_of(key), key, ref, copy->version,
                             Steady::now() + kCallTime);
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
