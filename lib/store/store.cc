#include "store/store.h"

#include <fmt/format.h>

#include <atomic>
#include <cstring>
#include <list>
#include <mutex>
#include <unordered_map>

#include "common/units.h"

namespace kvrdma::store {

using memory::Allocation;

struct Entry {
  Allocation allocation;
  uint64_t length = 0;
  Clock::time_point expiry = Clock::time_point::max();
  std::atomic<uint32_t> pins{0};
};

ValueRef::ValueRef(std::shared_ptr<Entry> entry) : entry_(std::move(entry)) {
  if (entry_) entry_->pins.fetch_add(1, std::memory_order_relaxed);
}
ValueRef::~ValueRef() {
  if (entry_) entry_->pins.fetch_sub(1, std::memory_order_release);
}
const std::byte* ValueRef::data() const { return entry_ ? entry_->allocation.data() : nullptr; }
uint64_t ValueRef::size() const { return entry_ ? entry_->length : 0; }
uint64_t ValueRef::pool_offset() const { return entry_ ? entry_->allocation.offset() : 0; }

struct Store::Index {
  memory::MemoryPool& pool;
  const Clock& clock;
  StoreOptions options;

  struct Slot {
    std::shared_ptr<Entry> entry;
    std::list<std::string>::iterator lru;  // position in `lru`, front = most recent
  };
  mutable std::mutex mu;
  std::unordered_map<std::string, Slot> map;  // guarded by mu
  std::list<std::string> lru;                 // guarded by mu
  uint64_t value_bytes = 0;                   // guarded by mu
  uint64_t evictions = 0;                     // guarded by mu
  uint64_t expirations = 0;                   // guarded by mu

  Index(memory::MemoryPool& p, const Clock& c, StoreOptions o) : pool(p), clock(c), options(o) {}

  // Removes `it` from the index; its memory is freed once no ValueRef pins it.
  void unlink(std::unordered_map<std::string, Slot>::iterator it) {
    value_bytes -= it->second.entry->length;
    lru.erase(it->second.lru);
    map.erase(it);
  }
  bool expired(const Entry& e, Clock::time_point now) const { return e.expiry <= now; }
};

Store::Store(memory::MemoryPool& pool, const Clock& clock, StoreOptions options)
    : index_(std::make_unique<Index>(pool, clock, options)) {}

Store::~Store() = default;

Status Store::check(std::string_view key, uint64_t value_len) const {
  const StoreOptions& o = index_->options;
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  if (key.size() > o.max_key_bytes) {
    return Status(Code::kInvalidArgument,
                  fmt::format("key of {} bytes exceeds the limit of {} bytes (--max-key-bytes)",
                              key.size(), o.max_key_bytes));
  }
  uint64_t limit = o.max_value_bytes ? o.max_value_bytes : index_->pool.size();
  limit = std::min(limit, index_->pool.size());
  if (value_len > limit) {
    return Status(Code::kInvalidArgument,
                  fmt::format("value of {} exceeds the maximum value size of {}; raise "
                              "--max-value-mb / --memory-mb on the server or split the value",
                              format_bytes(value_len), format_bytes(limit)));
  }
  return Status();
}

Result<Allocation> Store::reserve(uint64_t len) {
  Index& ix = *index_;
  for (;;) {
    auto a = ix.pool.allocate(len == 0 ? 1 : len);
    if (a.is_ok() || a.status().code() != Code::kResourceExhausted) return a;
    if (!ix.options.evict) {
      return Status(Code::kResourceExhausted,
                    a.status().message() + "; eviction is off (--eviction none): delete keys, "
                                           "raise --memory-mb or use --eviction lru");
    }
    // Evict the least recently used unpinned entry, then retry.
    std::shared_ptr<Entry> victim;
    {
      std::lock_guard lock(ix.mu);
      for (auto it = ix.lru.rbegin(); it != ix.lru.rend(); ++it) {
        auto m = ix.map.find(*it);
        if (m->second.entry->pins.load(std::memory_order_acquire) == 0) {
          victim = m->second.entry;
          ix.unlink(m);
          ++ix.evictions;
          break;
        }
      }
    }
    if (!victim) {
      return Status(Code::kResourceExhausted,
                    a.status().message() + "; every stored value is in use, nothing to evict");
    }
    // `victim` frees its extent here, outside the index lock.
  }
}

Status Store::commit(std::string_view key, Allocation allocation, uint64_t len,
                     std::chrono::milliseconds ttl) {
  KVRDMA_RETURN_IF_ERROR(check(key, len));
  if (!allocation.valid() || allocation.capacity() < len) {
    return Status(Code::kInternal, "commit of a value larger than its reservation");
  }
  auto entry = std::make_shared<Entry>();
  entry->allocation = std::move(allocation);
  entry->length = len;
  Index& ix = *index_;
  if (ttl.count() > 0) entry->expiry = ix.clock.now() + ttl;
  std::shared_ptr<Entry> old;
  {
    std::lock_guard lock(ix.mu);
    auto it = ix.map.find(std::string(key));
    if (it != ix.map.end()) {
      old = it->second.entry;
      ix.unlink(it);
    }
    ix.lru.emplace_front(key);
    ix.map.emplace(std::string(key), Index::Slot{std::move(entry), ix.lru.begin()});
    ix.value_bytes += len;
  }
  return Status();  // `old` is released outside the lock
}

Status Store::put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) {
  KVRDMA_RETURN_IF_ERROR(check(key, value.size()));
  auto a = reserve(value.size());
  if (!a) return a.status();
  if (!value.empty()) std::memcpy(a->data(), value.data(), value.size());
  return commit(key, std::move(a).value(), value.size(), ttl);
}

Result<ValueRef> Store::get(std::string_view key) {
  Index& ix = *index_;
  std::shared_ptr<Entry> dropped;
  std::lock_guard lock(ix.mu);
  auto it = ix.map.find(std::string(key));
  if (it == ix.map.end()) return Status(Code::kNotFound, "key not found");
  if (ix.expired(*it->second.entry, ix.clock.now())) {
    dropped = it->second.entry;
    ix.unlink(it);
    ++ix.expirations;
    return Status(Code::kNotFound, "key not found (expired)");
  }
  ix.lru.splice(ix.lru.begin(), ix.lru, it->second.lru);
  return ValueRef(it->second.entry);
}

bool Store::erase(std::string_view key) {
  Index& ix = *index_;
  std::shared_ptr<Entry> dropped;
  std::lock_guard lock(ix.mu);
  auto it = ix.map.find(std::string(key));
  if (it == ix.map.end()) return false;
  bool live = !ix.expired(*it->second.entry, ix.clock.now());
  dropped = it->second.entry;
  ix.unlink(it);
  if (!live) ++ix.expirations;
  return live;
}

size_t Store::sweep_expired() {
  Index& ix = *index_;
  std::vector<std::shared_ptr<Entry>> dropped;
  {
    std::lock_guard lock(ix.mu);
    auto now = ix.clock.now();
    for (auto it = ix.map.begin(); it != ix.map.end();) {
      auto cur = it++;
      if (ix.expired(*cur->second.entry, now)) {
        dropped.push_back(cur->second.entry);
        ix.unlink(cur);
        ++ix.expirations;
      }
    }
  }
  return dropped.size();  // memory returns to the pool as `dropped` goes, outside the lock
}

StoreStats Store::stats() const {
  const Index& ix = *index_;
  std::lock_guard lock(ix.mu);
  StoreStats s;
  s.keys = ix.map.size();
  s.value_bytes = ix.value_bytes;
  s.evictions = ix.evictions;
  s.expirations = ix.expirations;
  for (const auto& [k, slot] : ix.map) {
    if (slot.entry->pins.load(std::memory_order_relaxed) > 0) ++s.pinned;
  }
  return s;
}

}  // namespace kvrdma::store
