// Caller memory on the Client (README.md "Caller memory"): MemoryHandle, registering and
// allocating memory, checking each item against its handle, and the public calls. Routing to
// the owners lives in client_route.cc with the other data calls.
#include <fmt/format.h>

#include <cstring>

#include "client/caller_memory.h"
#include "client/client_impl.h"
#include "common/logging.h"

namespace kvrdma {

using client::MemGet;
using client::MemPut;

MemoryHandle& MemoryHandle::operator=(MemoryHandle&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    kind_ = other.kind_;
  }
  return *this;
}

MemoryHandle::~MemoryHandle() { release(); }

MemoryHandle::State::~State() {
  for (auto& [key, reg] : registrations) {
    if (auto s = reg.session.lock()) s->release_region(reg.session_id, reg.region_id);
  }
}

// The state goes with its last user: a call still using the memory keeps it registered.
void MemoryHandle::release() {
  state_.reset();
  data_ = nullptr;
  size_ = 0;
}

namespace {

Status bad_span(std::string_view what, size_t offset, size_t len, size_t size) {
  return Status(Code::kInvalidArgument,
                fmt::format("{} [{}, +{}) lies outside the {}-byte memory handle; keep offset + "
                            "length within MemoryHandle::size()",
                            what, offset, len, size));
}

}  // namespace

Result<MemoryHandle> Client::Impl::register_memory(void* ptr, size_t len, MemoryKind kind) {
  auto region = transport_->register_memory(ptr, len, kind);
  if (!region) return region.status();
  auto state = std::make_shared<MemoryHandle::State>();
  state->owner = this;
  state->transport = transport_;
  state->region = std::move(*region);
  state->size = len;
  std::byte* data = state->region->data();
  {
    std::lock_guard lock(mem_mu_);
    std::erase_if(memories_, [](const auto& e) { return e.second.expired(); });
    memories_[data] = state;
  }
  return MemoryHandle(std::move(state), data, len, kind);
}

Result<MemoryHandle> Client::Impl::allocate(size_t len) {
  if (len == 0) return Status(Code::kInvalidArgument, "cannot allocate 0 bytes; give a length");
  auto region = transport_->allocate(len);
  if (!region) return region.status().with_context(fmt::format("allocating {} bytes", len));
  auto state = std::make_shared<MemoryHandle::State>();
  state->owner = this;
  state->transport = transport_;
  state->region = std::move(*region);
  state->size = len;
  std::byte* data = state->region->data();
  {
    std::lock_guard lock(mem_mu_);
    std::erase_if(memories_, [](const auto& e) { return e.second.expired(); });
    memories_[data] = state;
  }
  return MemoryHandle(std::move(state), data, len, MemoryKind::kHost);
}

std::pair<std::shared_ptr<MemoryHandle::State>, size_t> Client::Impl::find_memory(
    const std::byte* p, size_t len) {
  std::lock_guard lock(mem_mu_);
  auto it = memories_.upper_bound(p);
  if (it == memories_.begin()) return {};
  --it;
  auto state = it->second.lock();
  if (!state) return {};
  const size_t off = static_cast<size_t>(p - it->first);
  if (off > state->size || len > state->size - off) return {};
  return {std::move(state), off};
}

Result<MemGet> Client::Impl::mem_get(std::string_view key, const MemoryHandle* handle,
                                     size_t offset, size_t capacity) const {
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  if (handle == nullptr || !handle->valid()) {
    return Status(Code::kInvalidArgument,
                  "memory handle is empty or released; register or allocate the memory again");
  }
  if (handle->state()->owner != this) {
    return Status(Code::kInvalidArgument,
                  "memory handle belongs to another Client; use it with the client that made it");
  }
  if (offset > handle->size() || capacity > handle->size() - offset) {
    return bad_span("destination", offset, capacity, handle->size());
  }
  return MemGet{key, handle->state(), offset, capacity};
}

Result<MemPut> Client::Impl::mem_put(std::string_view key, const MemoryHandle* handle,
                                     size_t offset, size_t len) const {
  auto g = mem_get(key, handle, offset, 0);
  if (!g) return g.status();
  if (offset > handle->size() || len > handle->size() - offset) {
    return bad_span("source", offset, len, handle->size());
  }
  return MemPut{key, handle->state(), offset, len};
}

// --- the public calls ---

Result<MemoryHandle> Client::register_memory(void* ptr, size_t len, MemoryKind kind) {
  log::Scope scope(impl_->logger());
  return impl_->register_memory(ptr, len, kind);
}

Result<MemoryHandle> Client::allocate(size_t len) {
  log::Scope scope(impl_->logger());
  return impl_->allocate(len);
}

Result<uint64_t> Client::get_into(std::string_view key, const MemoryHandle& handle, size_t offset,
                                  size_t capacity, uint64_t* value_len) {
  log::Scope scope(impl_->logger());
  auto item = impl_->mem_get(key, &handle, offset, capacity);
  if (!item) return item.status();
  item->value_len = value_len;
  return impl_->get_into(*item);
}

Result<uint64_t> Client::get_into(std::string_view key, std::span<std::byte> buffer,
                                  uint64_t* value_len) {
  log::Scope scope(impl_->logger());
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  if (auto [mem, off] = impl_->find_memory(buffer.data(), buffer.size()); mem) {
    return impl_->get_into(MemGet{key, std::move(mem), off, buffer.size(), value_len});
  }
  auto v = impl_->get(key);
  if (!v) return v.status();
  if (value_len != nullptr) *value_len = v->size();
  if (v->size() > buffer.size()) {
    return Status(Code::kFailedPrecondition,
                  fmt::format("the value is {} bytes but the buffer holds {}; give at least {} "
                              "bytes (nothing was written)",
                              v->size(), buffer.size(), v->size()));
  }
  if (v->size() > 0) std::memcpy(buffer.data(), v->data(), v->size());
  return v->size();
}

Status Client::put_from(std::string_view key, const MemoryHandle& handle, size_t offset, size_t len,
                        uint64_t ttl_ms) {
  log::Scope scope(impl_->logger());
  auto item = impl_->mem_put(key, &handle, offset, len);
  if (!item) return item.status();
  return impl_->put_from(*item, ttl_ms);
}

std::vector<Result<uint64_t>> Client::get_many_into(std::span<const GetIntoItem> items) {
  log::Scope scope(impl_->logger());
  std::vector<Result<uint64_t>> results(items.size(), Status(Code::kInternal, "not sent"));
  std::vector<MemGet> good;
  std::vector<size_t> at;
  for (size_t i = 0; i < items.size(); ++i) {
    auto g = impl_->mem_get(items[i].key, items[i].handle, items[i].offset, items[i].capacity);
    if (!g) {
      results[i] = g.status();
      continue;
    }
    g->value_len = items[i].value_len;
    good.push_back(std::move(*g));
    at.push_back(i);
  }
  if (!good.empty()) {
    auto got = impl_->get_many_into(good);
    for (size_t j = 0; j < at.size(); ++j) results[at[j]] = std::move(got[j]);
  }
  return results;
}

std::vector<Status> Client::put_many_from(std::span<const PutFromItem> items, uint64_t ttl_ms) {
  log::Scope scope(impl_->logger());
  std::vector<Status> results(items.size());
  std::vector<MemPut> good;
  std::vector<size_t> at;
  for (size_t i = 0; i < items.size(); ++i) {
    auto p = impl_->mem_put(items[i].key, items[i].handle, items[i].offset, items[i].len);
    if (!p) {
      results[i] = p.status();
      continue;
    }
    good.push_back(std::move(*p));
    at.push_back(i);
  }
  if (!good.empty()) {
    auto got = impl_->put_many_from(good, ttl_ms);
    for (size_t j = 0; j < at.size(); ++j) results[at[j]] = std::move(got[j]);
  }
  return results;
}

}  // namespace kvrdma
