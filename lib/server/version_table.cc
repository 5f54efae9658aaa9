#include "server/version_table.h"

namespace kvrdma::server {

VersionTable::VersionTable() : slot_max_(cluster::kSlots) {}

VersionTable::Shard& VersionTable::shard(std::string_view key) const {
  return shards_[std::hash<std::string_view>()(key) % kShards];
}

void VersionTable::with_key(std::string_view key,
                            const std::function<uint64_t(uint64_t current)>& fn) {
  Shard& s = shard(key);
  std::lock_guard lock(s.mu);
  auto it = s.versions.find(std::string(key));
  const uint64_t current = it == s.versions.end() ? 0 : it->second;
  const uint64_t next = fn(current);
  if (next == 0) return;
  if (it == s.versions.end()) {
    s.versions.emplace(std::string(key), next);
  } else {
    it->second = next;
  }
  std::atomic<uint64_t>& max = slot_max_[cluster::slot_of(key)];
  uint64_t seen = max.load(std::memory_order_relaxed);
  while (seen < next && !max.compare_exchange_weak(seen, next, std::memory_order_acq_rel)) {
  }
}

uint64_t VersionTable::version_of(std::string_view key) const {
  Shard& s = shard(key);
  std::lock_guard lock(s.mu);
  auto it = s.versions.find(std::string(key));
  return it == s.versions.end() ? 0 : it->second;
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
  }
  if (slots == nullptr) return;
  for (uint32_t slot = 0; slot < cluster::kSlots && slot < slots->size(); ++slot) {
    if ((*slots)[slot]) slot_max_[slot].store(0, std::memory_order_release);
  }
}

void VersionTable::clear() {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    s.versions.clear();
  }
  for (auto& m : slot_max_) m.store(0, std::memory_order_release);
}

}  // namespace kvrdma::server
