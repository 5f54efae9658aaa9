#include "server/version_table.h"

namespace kvrdma::server {

VersionTable::VersionTable(Steady::duration keep_tombstones, Clock clock)
    : keep_tombstones_(keep_tombstones),
      clock_(clock ? std::move(clock) : Clock([] { return Steady::now(); })),
      slot_max_(cluster::kSlots),
      slot_floor_(cluster::kSlots) {}

VersionTable::Shard& VersionTable::shard(std::string_view key) const {
  return shards_[std::hash<std::string_view>()(key) % kShards];
}

void VersionTable::raise(std::atomic<uint64_t>& v, uint64_t to) {
  uint64_t seen = v.load(std::memory_order_relaxed);
  while (seen < to && !v.compare_exchange_weak(seen, to, std::memory_order_acq_rel)) {
  }
}

void VersionTable::prune(Shard& s, Steady::time_point now) {
  // Bounded by the shard's tombstones; each is looked at once.
  while (!s.tombstones.empty() && s.tombstones.front().at + keep_tombstones_ <= now) {
    Tombstone& t = s.tombstones.front();
    auto it = s.versions.find(t.key);
    // Only when the key is still at that delete (a later PUT or delete replaced it otherwise).
    if (it != s.versions.end() && it->second == t.version) {
      raise(slot_floor_[cluster::slot_of(t.key)], t.version);
      s.versions.erase(it);
    }
    s.tombstones.pop_front();
  }
}

void VersionTable::with_key(std::string_view key,
                            const std::function<uint64_t(uint64_t current)>& fn, bool erase) {
  Shard& s = shard(key);
  const uint32_t slot = cluster::slot_of(key);
  std::lock_guard lock(s.mu);
  const Steady::time_point now = clock_();
  prune(s, now);
  auto it = s.versions.find(std::string(key));
  const uint64_t current =
      it == s.versions.end() ? slot_floor_[slot].load(std::memory_order_acquire) : it->second;
  const uint64_t next = fn(current);
  if (next == 0) return;
  if (it == s.versions.end()) {
    s.versions.emplace(std::string(key), next);
  } else {
    it->second = next;
  }
  if (erase) s.tombstones.push_back(Tombstone{std::string(key), next, now});
  raise(slot_max_[slot], next);
}

uint64_t VersionTable::version_of(std::string_view key) const {
  Shard& s = shard(key);
  std::lock_guard lock(s.mu);
  auto it = s.versions.find(std::string(key));
  if (it != s.versions.end()) return it->second;
  return slot_floor_[cluster::slot_of(key)].load(std::memory_order_acquire);
}

size_t VersionTable::size() const {
  size_t n = 0;
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.versions.size();
  }
  return n;
}

void VersionTable::forget(std::string_view key) {
  Shard& s = shard(key);
  std::lock_guard lock(s.mu);
  s.versions.erase(std::string(key));
}

void VersionTable::forget_where(const std::function<bool(std::string_view)>& pred,
                                const std::vector<bool>* slots) {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    std::erase_if(s.versions, [&](const auto& kv) { return pred(kv.first); });
    // A forgotten key's tombstone record finds no entry (or a later one) when it is pruned.
  }
  if (slots == nullptr) return;
  for (uint32_t slot = 0; slot < cluster::kSlots && slot < slots->size(); ++slot) {
    if ((*slots)[slot]) {
      slot_max_[slot].store(0, std::memory_order_release);
      slot_floor_[slot].store(0, std::memory_order_release);
    }
  }
}

void VersionTable::clear() {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    s.versions.clear();
    s.tombstones.clear();
  }
  for (auto& m : slot_max_) m.store(0, std::memory_order_release);
  for (auto& f : slot_floor_) f.store(0, std::memory_order_release);
}

}  // namespace kvrdma::server
