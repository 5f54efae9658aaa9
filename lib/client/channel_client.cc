#include "client/channel_client.h"

#include <fmt/format.h>

#include <algorithm>

namespace kvrdma::client {

namespace ch = kvrdma::channel;

ChannelClient::ChannelClient(std::unique_ptr<ch::ClientLink> link) : link_(std::move(link)) {
  const uint32_t n = link_->slot_count();
  generations_.assign(n, 0);
  for (uint32_t i = n; i > 0; --i) free_.push_back(i - 1);
}

size_t ChannelClient::max_put_value(size_t key_len) const {
  const size_t fixed = ch::kRequestHeaderBytes + key_len;
  return fixed < link_->slot_bytes() ? link_->slot_bytes() - fixed : 0;
}

Result<ChannelClient::Ticket> ChannelClient::submit(ch::Request request, Clock::time_point deadline,
                                                    bool wait_for_slot) {
  if (ch::encoded_size(request) > link_->slot_bytes()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("channel: {} request of {} bytes exceeds the {}-byte slot",
                              ch::op_name(request.op), ch::encoded_size(request),
                              link_->slot_bytes()));
  }
  Ticket t;
  {
    std::unique_lock lock(mu_);
    if (!wait_for_slot && free_.empty()) {
      return Status(Code::kResourceExhausted,
                    fmt::format("channel: all {} slots are busy", link_->slot_count()));
    }
    if (!freed_.wait_until(lock, deadline, [&] { return !free_.empty(); })) {
      return Status(Code::kDeadlineExceeded,
                    fmt::format("channel: all {} slots stayed busy until the deadline",
                                link_->slot_count()));
    }
    t.slot = free_.back();
    free_.pop_back();
    t.generation = ++generations_[t.slot];
  }
  request.slot = t.slot;
  request.generation = t.generation;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  request.timeout_ms = static_cast<uint32_t>(std::clamp<int64_t>(left.count(), 1, 60'000));
  std::string bytes;
  Status s = ch::encode(request, link_->slot_bytes(), &bytes);
  if (s.is_ok()) {
    s = link_->post(t.slot, t.generation,
                    std::span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
  }
  if (!s.is_ok()) {
    release(t.slot);
    return s;
  }
  posted_.fetch_add(1, std::memory_order_relaxed);
  return t;
}

bool ChannelClient::copy_out(Ticket t, std::string* out) {
  std::span<const std::byte> b = link_->poll(t.slot, t.generation);
  if (b.empty()) return false;
  out->assign(reinterpret_cast<const char*>(b.data()), b.size());
  // A completion for another generation landing while we copied: not ours after all.
  return !link_->poll(t.slot, t.generation).empty();
}

Status ChannelClient::wait(Ticket t, Clock::time_point deadline, std::string* out) {
  for (int i = 0; i < 1000; ++i) {
    Status s = link_->wait(t.slot, t.generation, deadline);
    if (!s.is_ok()) {
      if (s.code() == Code::kUnavailable) broken_.store(true, std::memory_order_relaxed);
      release(t.slot);
      return s;
    }
    if (copy_out(t, out)) {
      release(t.slot);
      return Status::ok();
    }
  }
  release(t.slot);
  return Status(Code::kInternal, "channel: the completion kept changing while being read");
}

bool ChannelClient::poll(Ticket t, std::string* out) {
  if (!copy_out(t, out)) return false;
  release(t.slot);
  return true;
}

void ChannelClient::release(uint32_t slot) {
  {
    std::lock_guard lock(mu_);
    free_.push_back(slot);
  }
  freed_.notify_one();
}

Result<ch::Response> ChannelClient::call(ch::Request request, Clock::time_point deadline,
                                         std::string* keep, bool wait_for_slot) {
  const ch::Op op = request.op;
  auto t = submit(std::move(request), deadline, wait_for_slot);
  if (!t) return t.status();
  ring();
  KVRDMA_RETURN_IF_ERROR(wait(*t, deadline, keep));
  auto r =
      ch::decode_response(std::span(reinterpret_cast<const std::byte*>(keep->data()), keep->size()),
                          link_->slot_bytes());
  if (!r) return r.status().with_context("channel: the server's answer");
  if (r->generation != t->generation || r->slot != t->slot || r->op != op) {
    return Status(Code::kInternal, "channel: the answer names another request");
  }
  return r;
}

Status status_of(const ch::Response& r) {
  if (r.code == Code::kOk) return Status();
  return Status(r.code, std::string(r.message), std::string(r.detail));
}

Status status_of(const ch::ResultRef& r, std::string_view key) {
  switch (r.code) {
    case Code::kOk: return Status();
    case Code::kNotFound:
      return Status(Code::kNotFound, fmt::format("key '{}' is not in the cache", key));
    default:
      return Status(r.code, fmt::format("key '{}': {} (request channel)", key, code_name(r.code)));
  }
}

}  // namespace kvrdma::client
