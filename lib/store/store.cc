#include "store/store.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "common/units.h"

namespace kvrdma::store {

using memory::Allocation;

namespace {

// An entry's refs word: the index's own reference (while the key maps to it) plus one per pin.
constexpr uint32_t kLinked = 1u << 31;
constexpr uint32_t kPinMask = kLinked - 1;

// The meta word: expiry in milliseconds since the Store's epoch (0: none), and the key length.
constexpr int kKeyBits = 21;  // --max-key-bytes is at most 1 MiB
constexpr uint64_t kKeyMask = (1ull << kKeyBits) - 1;
constexpr uint64_t kMaxExpiryMs = (1ull << (64 - kKeyBits)) - 1;  // ~278 years

}  // namespace

struct LruLink {
  LruLink* prev = this;
  LruLink* next = this;
  void unlink() {
    prev->next = next;
    next->prev = prev;
  }
  void insert_after(LruLink* at) {  // `at` then this
    prev = at;
    next = at->next;
    at->next->prev = this;
    at->next = this;
  }
};

// One stored value: 56 bytes, then the key bytes, in one heap block. Shared between the index
// and every ValueRef through `refs`; the last of them to let go returns the extent and the block.
struct Entry : LruLink {
  Entry* chain = nullptr;  // next entry in the same hash bucket
  uint64_t offset = 0;     // the value's extent in the pool
  uint64_t length = 0;     // the value's length
  uint64_t meta = 0;       // expiry_ms << kKeyBits | key length
  std::atomic<uint32_t> refs{kLinked};
  uint32_t capacity64 = 0;  // the extent's capacity / 64 (every pool extent is a multiple of 64)

  std::string_view key() const {
    return {reinterpret_cast<const char*>(this + 1), static_cast<size_t>(meta & kKeyMask)};
  }
  uint64_t expiry_ms() const { return meta >> kKeyBits; }
  bool has_ttl() const { return expiry_ms() != 0; }
};
static_assert(sizeof(Entry) == 56, "the entry layout is the index's memory budget");

// The index. Lock order: Index::mu, never held while taking the pool's mutex: an entry whose last
// reference may be dropped is dropped after the lock is released. Blocks for new keys are built
// before the lock is taken, so the critical sections allocate nothing beyond a bucket-array growth.
struct Index {
  memory::MemoryPool& pool;
  const Clock& clock;
  const StoreOptions options;
  const Clock::time_point epoch;  // expiries count milliseconds from here
  std::atomic<int64_t> pinned_entries{0};

  mutable std::mutex mu;
  std::unique_ptr<Entry*[]> buckets;         // guarded by mu; a power of two of them
  uint64_t bucket_mask = 0;                  // guarded by mu
  uint64_t size = 0;                         // guarded by mu
  LruLink lru;                               // guarded by mu; lru.next = most recently used
  std::multimap<uint64_t, Entry*> expiries;  // guarded by mu; entries with a TTL, by expiry_ms
  uint64_t value_bytes = 0;                  // guarded by mu
  uint64_t evictions = 0;                    // guarded by mu
  uint64_t expirations = 0;                  // guarded by mu

  Index(memory::MemoryPool& p, const Clock& c, StoreOptions o)
      : pool(p), clock(c), options(o), epoch(c.now()) {
    resize(1024);
  }
  ~Index() {
    // The Store outlives every ValueRef, so the index holds the last reference to each entry.
    for (LruLink* l = lru.next; l != &lru;) {
      Entry* e = static_cast<Entry*>(l);
      l = l->next;
      destroy(e);
    }
  }

  // Milliseconds since the epoch. An expiry is set from the time rounded up and checked against
  // the time rounded down, so an entry never expires before its TTL and at most 1 ms after it.
  int64_t elapsed_ns() const {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock.now() - epoch).count();
    return std::max<int64_t>(ns, 0);
  }
  uint64_t now_ms() const { return static_cast<uint64_t>(elapsed_ns()) / 1'000'000; }
  uint64_t now_ms_rounded_up() const {
    return (static_cast<uint64_t>(elapsed_ns()) + 999'999) / 1'000'000;
  }
  bool expired(const Entry& e, uint64_t now) const { return e.has_ttl() && e.expiry_ms() <= now; }

  static size_t hash(std::string_view key) { return std::hash<std::string_view>{}(key); }
  Entry** slot_of(std::string_view key) {
    Entry** p = &buckets[hash(key) & bucket_mask];
    while (*p != nullptr && (*p)->key() != key) p = &(*p)->chain;
    return p;  // the link that points at the entry, or the null link at the chain's end
  }
  Entry* find(std::string_view key) { return *slot_of(key); }

  void resize(uint64_t n) {
    auto fresh = std::make_unique<Entry*[]>(n);  // zeroed
    for (uint64_t b = 0; buckets && b <= bucket_mask; ++b) {
      for (Entry* e = buckets[b]; e != nullptr;) {
        Entry* next = e->chain;
        Entry*& head = fresh[hash(e->key()) & (n - 1)];
        e->chain = head;
        head = e;
        e = next;
      }
    }
    buckets = std::move(fresh);
    bucket_mask = n - 1;
  }

  // Links a new entry whose key is absent.
  void link(Entry* e) {
    if (size + 1 > bucket_mask + 1) resize((bucket_mask + 1) * 2);  // load factor <= 1
    Entry*& head = buckets[hash(e->key()) & bucket_mask];
    e->chain = head;
    head = e;
    ++size;
    e->insert_after(&lru);
    if (e->has_ttl()) expiries.emplace(e->expiry_ms(), e);
    value_bytes += e->length;
  }
  // Takes the entry `*at` points to out of the index; the caller drops the index's reference with
  // release() after letting go of the lock.
  Entry* unlink(Entry** at) {
    Entry* e = *at;
    *at = e->chain;
    e->chain = nullptr;
    --size;
    e->unlink();
    if (e->has_ttl()) forget_expiry(e);
    value_bytes -= e->length;
    return e;
  }
  void forget_expiry(Entry* e) {
    auto [b, end] = expiries.equal_range(e->expiry_ms());
    for (auto it = b; it != end; ++it) {
      if (it->second == e) {
        expiries.erase(it);
        return;
      }
    }
  }
  void touch(Entry* e) {
    e->unlink();
    e->insert_after(&lru);
  }

  // Drops the index's reference to an unlinked entry (outside mu).
  void release(Entry* e) {
    if (e != nullptr && e->refs.fetch_sub(kLinked, std::memory_order_acq_rel) == kLinked) {
      destroy(e);
    }
  }
  void destroy(Entry* e) {
    Allocation back = pool.adopt(e->offset, uint64_t{e->capacity64} * 64);
    e->~Entry();
    ::operator delete(e);
    // `back` returns the extent to the pool here.
  }

  Entry* make_entry(std::string_view key, Allocation allocation, uint64_t len, uint64_t expiry) {
    void* block = ::operator new(sizeof(Entry) + key.size());
    Entry* e = new (block) Entry;
    std::memcpy(reinterpret_cast<char*>(e + 1), key.data(), key.size());
    e->offset = allocation.offset();
    e->capacity64 = static_cast<uint32_t>(allocation.capacity() / 64);
    e->length = len;
    e->meta = expiry << kKeyBits | key.size();
    allocation.detach();  // the entry owns the extent now
    return e;
  }
};

// Drops an unlinked entry's index reference when it goes out of scope: declare it before the
// lock guard so it runs after the lock is released.
struct Unlinked {
  Index& ix;
  Entry* entry = nullptr;
  ~Unlinked() { ix.release(entry); }
};

ValueRef::ValueRef(Entry* entry, Index* index) : entry_(entry), index_(index) {
  if ((entry_->refs.fetch_add(1, std::memory_order_acq_rel) & kPinMask) == 0) {
    index_->pinned_entries.fetch_add(1, std::memory_order_relaxed);
  }
}

ValueRef& ValueRef::operator=(ValueRef&& other) noexcept {
  if (this != &other) {
    unpin();
    entry_ = std::exchange(other.entry_, nullptr);
    index_ = other.index_;
  }
  return *this;
}

ValueRef::~ValueRef() { unpin(); }

void ValueRef::unpin() {
  Entry* e = std::exchange(entry_, nullptr);
  if (e == nullptr) return;
  uint32_t before = e->refs.fetch_sub(1, std::memory_order_acq_rel);
  if ((before & kPinMask) == 1) index_->pinned_entries.fetch_sub(1, std::memory_order_relaxed);
  if (before == 1) index_->destroy(e);  // the index let go already: the extent goes back
}

const std::byte* ValueRef::data() const {
  return entry_ ? index_->pool.base() + entry_->offset : nullptr;
}
uint64_t ValueRef::size() const { return entry_ ? entry_->length : 0; }
uint64_t ValueRef::pool_offset() const { return entry_ ? entry_->offset : 0; }

Store::Store(memory::MemoryPool& pool, const Clock& clock, StoreOptions options)
    : index_(std::make_unique<Index>(pool, clock, options)) {}

Store::~Store() = default;

Status Store::check(std::string_view key, uint64_t value_len) const {
  const StoreOptions& o = index_->options;
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  if (key.size() > o.max_key_bytes) {
    return Status(Code::kInvalidArgument,
                  fmt::format("key of {} bytes exceeds the limit of {} bytes; shorten the key or "
                              "raise ServerOptions::max_key_bytes / max-key-bytes on the server",
                              key.size(), o.max_key_bytes));
  }
  if (o.max_value_bytes > 0 && value_len > o.max_value_bytes) {
    return Status(Code::kInvalidArgument,
                  fmt::format("value of {} bytes ({}) exceeds the limit of {} bytes ({}); raise "
                              "ServerOptions::max_value_bytes / max-value-mb on the server or "
                              "split the value",
                              value_len, format_bytes(value_len), o.max_value_bytes,
                              format_bytes(o.max_value_bytes)));
  }
  uint64_t pool_size = index_->pool.size();
  if (value_len > pool_size) {
    return Status(Code::kInvalidArgument,
                  fmt::format("value of {} bytes ({}) is larger than the whole memory pool of {} "
                              "bytes ({}); raise ServerOptions::memory_bytes / memory-mb on the "
                              "server or split the value",
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
                                "bytes); delete keys, raise ServerOptions::memory_bytes / "
                                "memory-mb or use ServerOptions::eviction / eviction lru",
                                len, u.free, u.largest_free));
    }
    // Evict the least recently used unpinned entry, then retry. Pins are only taken under mu, so
    // an entry seen unpinned here cannot be pinned before it is unlinked.
    Unlinked victim{ix};
    {
      std::lock_guard lock(ix.mu);
      for (LruLink* l = ix.lru.prev; l != &ix.lru; l = l->prev) {
        Entry* e = static_cast<Entry*>(l);
        if ((e->refs.load(std::memory_order_acquire) & kPinMask) == 0) {
          victim.entry = ix.unlink(ix.slot_of(e->key()));
          ++ix.evictions;
          break;
        }
      }
    }
    if (victim.entry == nullptr) {
      auto u = ix.pool.usage();
      return Status(Code::kResourceExhausted,
                    fmt::format("pool full: {} bytes asked, {} bytes free, and every stored value "
                                "is pinned by a transfer in progress; retry later or raise "
                                "ServerOptions::memory_bytes / memory-mb",
                                len, u.free));
    }
    // `victim` returns its extent here, outside the index lock.
  }
}

Status Store::commit(std::string_view key, Allocation allocation, uint64_t len,
                     std::chrono::milliseconds ttl) {
  KVRDMA_RETURN_IF_ERROR(check(key, len));
  if (!allocation.valid() || allocation.capacity() < std::max<uint64_t>(len, 1) ||
      allocation.capacity() % 64 != 0 || allocation.capacity() / 64 > UINT32_MAX) {
    return Status(Code::kInternal, fmt::format("commit of {} bytes into a reservation of {} bytes",
                                               len, allocation.capacity()));
  }
  Index& ix = *index_;
  uint64_t expiry = 0;
  if (ttl.count() > 0) {
    uint64_t t = static_cast<uint64_t>(ttl.count());
    expiry = std::min(kMaxExpiryMs, ix.now_ms_rounded_up() + std::min(t, kMaxExpiryMs));
  }
  // The block is built before the lock; what it replaces is released after it.
  Entry* fresh = ix.make_entry(key, std::move(allocation), len, expiry);
  Unlinked old{ix};
  {
    std::lock_guard lock(ix.mu);
    // Overwrite: unlink the old entry and link the new one under one lock hold, so a reader
    // gets either the old value or the new one.
    Entry** at = ix.slot_of(key);
    if (*at != nullptr) old.entry = ix.unlink(at);
    ix.link(fresh);
  }
  return Status();
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
  const uint64_t now = ix.now_ms();
  Unlinked dropped{ix};  // released after the lock is
  std::lock_guard lock(ix.mu);
  Entry** at = ix.slot_of(key);
  if (*at == nullptr) {
    return Status(Code::kNotFound, fmt::format("key '{}' is not in the cache", key));
  }
  if (ix.expired(**at, now)) {
    dropped.entry = ix.unlink(at);
    ++ix.expirations;
    return Status(Code::kNotFound, fmt::format("key '{}' is not in the cache (expired)", key));
  }
  ix.touch(*at);
  return ValueRef(*at, &ix);
}

bool Store::erase(std::string_view key) {
  Index& ix = *index_;
  const uint64_t now = ix.now_ms();
  Unlinked dropped{ix};  // released after the lock is
  std::lock_guard lock(ix.mu);
  Entry** at = ix.slot_of(key);
  if (*at == nullptr) return false;
  bool live = !ix.expired(**at, now);
  dropped.entry = ix.unlink(at);
  if (!live) ++ix.expirations;
  return live;
}

size_t Store::sweep_expired() {
  // In batches, so neither the lock hold nor the memory held at once grows with the expired set.
  constexpr size_t kBatch = 256;
  Index& ix = *index_;
  const uint64_t now = ix.now_ms();
  std::vector<Entry*> dropped;
  dropped.reserve(kBatch);
  size_t total = 0;
  for (;;) {
    {
      std::lock_guard lock(ix.mu);
      while (dropped.size() < kBatch && !ix.expiries.empty() && ix.expiries.begin()->first <= now) {
        Entry* e = ix.expiries.begin()->second;
        dropped.push_back(ix.unlink(ix.slot_of(e->key())));
        ++ix.expirations;
      }
    }
    size_t n = dropped.size();
    total += n;
    for (Entry* e : dropped) ix.release(e);  // extents return to the pool outside the lock
    dropped.clear();
    if (n < kBatch) return total;
  }
}

std::vector<std::string> Store::keys_where(
    const std::function<bool(std::string_view)>& pred) const {
  const Index& ix = *index_;
  const uint64_t now = ix.now_ms();
  std::vector<std::string> out;
  std::lock_guard lock(ix.mu);
  for (const LruLink* l = ix.lru.next; l != &ix.lru; l = l->next) {
    const Entry* e = static_cast<const Entry*>(l);
    if (!ix.expired(*e, now) && pred(e->key())) out.emplace_back(e->key());
  }
  return out;
}

std::optional<std::chrono::milliseconds> Store::ttl_left(const ValueRef& ref) const {
  if (ref.entry_ == nullptr || !ref.entry_->has_ttl()) return std::nullopt;
  const uint64_t now = index_->now_ms();
  const uint64_t expiry = ref.entry_->expiry_ms();  // immutable once the entry is built
  return std::chrono::milliseconds(expiry > now ? expiry - now : 1);
}

bool Store::erase_if_same(std::string_view key, const ValueRef& ref) {
  Index& ix = *index_;
  Unlinked dropped{ix};  // released after the lock is
  std::lock_guard lock(ix.mu);
  Entry** at = ix.slot_of(key);
  if (*at == nullptr || *at != ref.entry_) return false;
  dropped.entry = ix.unlink(at);
  return true;
}

StoreStats Store::stats() const {
  const Index& ix = *index_;
  StoreStats s;
  s.pinned = static_cast<uint64_t>(std::max<int64_t>(0, ix.pinned_entries.load()));
  std::lock_guard lock(ix.mu);
  s.keys = ix.size;
  s.value_bytes = ix.value_bytes;
  s.evictions = ix.evictions;
  s.expirations = ix.expirations;
  return s;
}

}  // namespace kvrdma::store
