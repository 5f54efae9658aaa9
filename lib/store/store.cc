#include "store/store.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/units.h"

namespace kvrdma::store {

using memory::Allocation;

// One stored value. Shared between the index and every ValueRef; its extent goes back to the pool
// when the last of them lets go.
struct Entry {
  Allocation allocation;
  uint64_t length = 0;
  Clock::time_point expiry = Clock::time_point::max();
  std::atomic<uint32_t> pins{0};
  std::atomic<int64_t>* pinned_entries = nullptr;  // the Store's count of entries with pins > 0
};

ValueRef::ValueRef(std::shared_ptr<Entry> entry) : entry_(std::move(entry)) {
  if (entry_ && entry_->pins.fetch_add(1, std::memory_order_acq_rel) == 0) {
    entry_->pinned_entries->fetch_add(1, std::memory_order_relaxed);
  }
}

ValueRef& ValueRef::operator=(ValueRef&& other) noexcept {
  if (this != &other) {
    unpin();
    entry_ = std::move(other.entry_);
  }
  return *this;
}

ValueRef::~ValueRef() { unpin(); }

void ValueRef::unpin() {
  if (!entry_) return;
  if (entry_->pins.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    entry_->pinned_entries->fetch_sub(1, std::memory_order_relaxed);
  }
  entry_.reset();  // may free the extent, if the index let go already
}

const std::byte* ValueRef::data() const { return entry_ ? entry_->allocation.data() : nullptr; }
uint64_t ValueRef::size() const { return entry_ ? entry_->length : 0; }
uint64_t ValueRef::pool_offset() const { return entry_ ? entry_->allocation.offset() : 0; }

namespace {

struct KeyHash {
  using is_transparent = void;  // find(string_view) without building a std::string
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace

// The index. Lock order: Index::mu, never held while taking the pool's mutex: every entry that may
// be the last owner of an extent is dropped after the lock is released. Nodes for new keys are
// built before the lock is taken, so the critical sections do no allocation beyond a rehash.
struct Store::Index {
  using Lru = std::list<const std::string*>;  // map keys, front = most recently used
  using Expiries = std::multimap<Clock::time_point, const std::string*>;  // keys with a TTL
  struct Slot {
    std::shared_ptr<Entry> entry;
    Lru::iterator lru;
    Expiries::iterator expiry;  // expiries.end() when the value has no TTL
  };
  using Map = std::unordered_map<std::string, Slot, KeyHash, std::equal_to<>>;

  memory::MemoryPool& pool;
  const Clock& clock;
  const StoreOptions options;
  std::atomic<int64_t> pinned_entries{0};

  mutable std::mutex mu;
  Map map;            // guarded by mu
  Lru lru;            // guarded by mu
  Expiries expiries;  // guarded by mu
  uint64_t value_bytes = 0;  // guarded by mu
  uint64_t evictions = 0;    // guarded by mu
  uint64_t expirations = 0;  // guarded by mu

  Index(memory::MemoryPool& p, const Clock& c, StoreOptions o) : pool(p), clock(c), options(o) {}

  // Takes `it` out of the index. The returned node owns the entry: let it go outside the lock.
  Map::node_type unlink(Map::iterator it) {
    value_bytes -= it->second.entry->length;
    lru.erase(it->second.lru);
    if (it->second.expiry != expiries.end()) expiries.erase(it->second.expiry);
    return map.extract(it);
  }
};

Store::Store(memory::MemoryPool& pool, const Clock& clock, StoreOptions options)
    : index_(std::make_unique<Index>(pool, clock, options)) {}

Store::~Store() = default;

Status Store::check(std::string_view key, uint64_t value_len) const {
  const StoreOptions& o = index_->options;
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  if (key.size() > o.max_key_bytes) {
    return Status(Code::kInvalidArgument,
                  fmt::format("key of {} bytes exceeds the limit of {} bytes; shorten the key or "
                              "raise --max-key-bytes on the server",
                              key.size(), o.max_key_bytes));
  }
  if (o.max_value_bytes > 0 && value_len > o.max_value_bytes) {
    return Status(Code::kInvalidArgument,
                  fmt::format("value of {} bytes ({}) exceeds the limit of {} bytes ({}); raise "
                              "--max-value-mb on the server or split the value",
                              value_len, format_bytes(value_len), o.max_value_bytes,
                              format_bytes(o.max_value_bytes)));
  }
  uint64_t pool_size = index_->pool.size();
  if (value_len > pool_size) {
    return Status(Code::kInvalidArgument,
                  fmt::format("value of {} bytes ({}) is larger than the whole memory pool of {} "
                              "bytes ({}); raise --memory-mb on the server or split the value",
                              value_len, format_bytes(value_len), pool_size,
                              format_bytes(pool_size)));
  }
  return Status();
}

Result<Allocation> Store::reserve(uint64_t len) {
  Index& ix = *index_;
  const uint64_t ask = std::max<uint64_t>(len, 1);  // an empty value still needs an extent
  for (;;) {
    auto a = ix.pool.allocate(ask);
    if (a.is_ok() || a.status().code() != Code::kResourceExhausted) return a;
    if (!ix.options.evict) {
      auto u = ix.pool.usage();
      return Status(Code::kResourceExhausted,
                    fmt::format("pool full: {} bytes asked, {} bytes free (largest free extent {} "
                                "bytes); delete keys, raise --memory-mb or use --eviction lru",
                                len, u.free, u.largest_free));
    }
    // Evict the least recently used unpinned entry, then retry. Pins are only taken under mu, so
    // an entry seen unpinned here cannot be pinned before it is unlinked.
    Index::Map::node_type victim;
    {
      std::lock_guard lock(ix.mu);
      for (auto it = ix.lru.rbegin(); it != ix.lru.rend(); ++it) {
        auto m = ix.map.find(**it);
        if (m->second.entry->pins.load(std::memory_order_acquire) == 0) {
          victim = ix.unlink(m);
          ++ix.evictions;
          break;
        }
      }
    }
    if (victim.empty()) {
      auto u = ix.pool.usage();
      return Status(Code::kResourceExhausted,
                    fmt::format("pool full: {} bytes asked, {} bytes free, and every stored value "
                                "is pinned by a transfer in progress; retry later or raise "
                                "--memory-mb",
                                len, u.free));
    }
    // `victim` returns its extent here, outside the index lock.
  }
}

Status Store::commit(std::string_view key, Allocation allocation, uint64_t len,
                     std::chrono::milliseconds ttl) {
  KVRDMA_RETURN_IF_ERROR(check(key, len));
  if (!allocation.valid() || allocation.capacity() < std::max<uint64_t>(len, 1)) {
    return Status(Code::kInternal,
                  fmt::format("commit of {} bytes into a reservation of {} bytes", len,
                              allocation.capacity()));
  }
  Index& ix = *index_;
  auto entry = std::make_shared<Entry>();
  entry->allocation = std::move(allocation);
  entry->length = len;
  entry->pinned_entries = &ix.pinned_entries;
  if (ttl.count() > 0) entry->expiry = ix.clock.now() + ttl;

  // Everything a new key needs, allocated before the lock; what is left over dies after it.
  Index::Map fresh;
  fresh.emplace(std::string(key), Index::Slot{});
  Index::Map::node_type node = fresh.extract(fresh.begin());
  Index::Lru fresh_lru(1, nullptr);
  Index::Expiries fresh_expiry;
  if (ttl.count() > 0) fresh_expiry.emplace(entry->expiry, nullptr);
  std::shared_ptr<Entry> old;
  Index::Expiries::node_type old_expiry;
  {
    std::lock_guard lock(ix.mu);
    auto it = ix.map.find(key);
    if (it != ix.map.end()) {
      // Overwrite: swap the entry in place; a reader holds either the old one or the new one.
      Index::Slot& slot = it->second;
      ix.value_bytes -= slot.entry->length;
      old = std::exchange(slot.entry, std::move(entry));
      ix.lru.splice(ix.lru.begin(), ix.lru, slot.lru);
      if (slot.expiry != ix.expiries.end()) old_expiry = ix.expiries.extract(slot.expiry);
    } else {
      node.mapped().entry = std::move(entry);
      it = ix.map.insert(std::move(node)).position;
      ix.lru.splice(ix.lru.begin(), fresh_lru);
      it->second.lru = ix.lru.begin();
      *it->second.lru = &it->first;
    }
    Index::Slot& slot = it->second;
    slot.expiry = ix.expiries.end();
    if (!fresh_expiry.empty()) {
      auto e = fresh_expiry.extract(fresh_expiry.begin());
      e.mapped() = &it->first;
      slot.expiry = ix.expiries.insert(std::move(e));
    }
    ix.value_bytes += len;
  }
  return Status();  // `old` (the replaced value) is released outside the lock
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
  auto now = ix.clock.now();
  Index::Map::node_type dropped;  // destroyed after the lock is released
  std::lock_guard lock(ix.mu);
  auto it = ix.map.find(key);
  if (it == ix.map.end()) {
    return Status(Code::kNotFound, fmt::format("key '{}' is not in the cache", key));
  }
  if (it->second.entry->expiry <= now) {
    dropped = ix.unlink(it);
    ++ix.expirations;
    return Status(Code::kNotFound, fmt::format("key '{}' is not in the cache (expired)", key));
  }
  ix.lru.splice(ix.lru.begin(), ix.lru, it->second.lru);
  return ValueRef(it->second.entry);
}

bool Store::erase(std::string_view key) {
  Index& ix = *index_;
  auto now = ix.clock.now();
  Index::Map::node_type dropped;  // destroyed after the lock is released
  std::lock_guard lock(ix.mu);
  auto it = ix.map.find(key);
  if (it == ix.map.end()) return false;
  bool live = it->second.entry->expiry > now;
  dropped = ix.unlink(it);
  if (!live) ++ix.expirations;
  return live;
}

size_t Store::sweep_expired() {
  // In batches, so neither the lock hold nor the memory held at once grows with the expired set.
  constexpr size_t kBatch = 256;
  Index& ix = *index_;
  auto now = ix.clock.now();
  std::vector<Index::Map::node_type> dropped;
  dropped.reserve(kBatch);
  size_t total = 0;
  for (;;) {
    {
      std::lock_guard lock(ix.mu);
      while (dropped.size() < kBatch && !ix.expiries.empty() &&
             ix.expiries.begin()->first <= now) {
        auto it = ix.map.find(*ix.expiries.begin()->second);
        dropped.push_back(ix.unlink(it));
        ++ix.expirations;
      }
    }
    size_t n = dropped.size();
    total += n;
    dropped.clear();  // extents return to the pool here, outside the index lock
    if (n < kBatch) return total;
  }
}

StoreStats Store::stats() const {
  const Index& ix = *index_;
  StoreStats s;
  s.pinned = static_cast<uint64_t>(std::max<int64_t>(0, ix.pinned_entries.load()));
  std::lock_guard lock(ix.mu);
  s.keys = ix.map.size();
  s.value_bytes = ix.value_bytes;
  s.evictions = ix.evictions;
  s.expirations = ix.expirations;
  return s;
}

}  // namespace kvrdma::store
