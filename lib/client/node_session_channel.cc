// NodeSession over the request channel: the Hello offer, and GET, get_many, small PUT and DELETE
// as channel requests. The calling code (node_session.cc, node_session_io.cc) picks these when
// the session has a channel; everything else (two-phase PUT, stats, admin) stays on gRPC.
#include <fmt/format.h>

#include <cstring>

#include "channel/fabric_link.h"
#include "channel/mock_link.h"
#include "client/node_session.h"
#include "common/logging.h"

namespace kvrdma::client {

namespace ch = kvrdma::channel;

void NodeSession::offer_channel(v1::HelloRequest* req,
                                std::unique_ptr<ch::ClientLink>* offered) const {
  // The shared-memory link (mock, libfabric shm), or libfabric messages where the server side
  // allows them.
  if (!options_.transport.channel) return;
  const bool shared = ch::uses_shared_memory_link(transport_->kind());
  if (!shared && !ch::fabric_link_allowed(*transport_)) return;
  auto link =
      shared ? ch::make_mock_client_link(ch::kDefaultSlots, ch::kDefaultSlotBytes)
             : ch::make_fabric_client_link(*transport_, ch::kDefaultSlots, ch::kDefaultSlotBytes);
  if (!link) {
    KVRDMA_LOG_WARN("kv-server {}: no request channel ({}); using gRPC", target_,
                    link.status().to_string());
    return;
  }
  req->set_channel_offer((*link)->offer());
  *offered = std::move(*link);
}

void NodeSession::open_channel(SessionState* st, std::unique_ptr<ch::ClientLink> offered) const {
  if (!offered) return;
  const v1::HelloReply& hello = st->hello;
  if (hello.channel_accept().empty()) {
    if (!hello.channel_refused().empty()) {
      KVRDMA_LOG_INFO("kv-server {} refused the request channel: {}", target_,
                      hello.channel_refused());
    }
    return;
  }
  if (Status s = offered->accept(hello.channel_accept()); !s.is_ok()) {
    KVRDMA_LOG_WARN("kv-server {}: request channel not opened ({}); using gRPC", target_,
                    s.to_string());
    return;
  }
  st->channel = std::make_shared<ChannelClient>(std::move(offered));
}

Status NodeSession::channel_get(const SessionState& st, const v1::GetRequest& req,
                                v1::GetReply* reply, Steady::time_point d) {
  ch::Request rq;
  rq.op = ch::Op::kGet;
  rq.key = req.key();
  rq.dest_offset = req.dest_offset();
  rq.dest_capacity = req.dest_capacity();
  rq.map_epoch = req.map_epoch();
  std::string keep;
  auto r = st.channel->call(rq, d, &keep, /*wait_for_slot=*/false);
  // Every slot busy, or the server gone: gRPC (which finds a restarted server).
  if (!r && (r.status().code() == Code::kResourceExhausted || !st.channel->usable())) {
    return get_round_trip(req, reply, d);
  }
  if (!r) return r.status();
  if (Status s = status_of(*r); !s.is_ok()) return s;
  if (r->results.size() != 1) {
    return Status(Code::kInternal, "channel: GET answer without exactly one result");
  }
  const ch::ResultRef& res = r->results[0];
  if (Status s = status_of(res, req.key()); !s.is_ok()) return s;
  reply->set_value_len(res.value_len);
  reply->set_is_inline(res.flags & ch::kFlagInline);
  reply->set_written(res.flags & ch::kFlagWritten);
  if (reply->is_inline()) reply->set_value(std::string(res.inline_bytes));
  return Status();
}

std::optional<Status> NodeSession::channel_put(const SessionState& st, std::string_view key,
                                               std::string_view value, uint64_t ttl_ms,
                                               uint64_t epoch, Steady::time_point d) {
  if (!st.channel || !st.channel->usable() ||
      value.size() > st.channel->max_put_value(key.size())) {
    return std::nullopt;
  }
  ch::Request rq;
  rq.op = ch::Op::kPut;
  rq.key = key;
  rq.value = value;
  rq.ttl_ms = ttl_ms;
  rq.map_epoch = epoch;
  std::string keep;
  auto r = st.channel->call(rq, d, &keep, /*wait_for_slot=*/false);
  if (!r && (r.status().code() == Code::kResourceExhausted || !st.channel->usable())) {
    return std::nullopt;  // gRPC
  }
  if (!r) return r.status();
  return status_of(*r);
}

std::optional<Status> NodeSession::channel_delete(const SessionState& st, std::string_view key,
                                                  uint64_t epoch, Steady::time_point d) {
  if (!st.channel || !st.channel->usable()) return std::nullopt;
  ch::Request rq;
  rq.op = ch::Op::kDelete;
  rq.key = key;
  rq.map_epoch = epoch;
  std::string keep;
  auto r = st.channel->call(rq, d, &keep, /*wait_for_slot=*/false);
  if (!r && (r.status().code() == Code::kResourceExhausted || !st.channel->usable())) {
    return std::nullopt;  // gRPC
  }
  if (!r) return r.status();
  return status_of(*r);
}

std::vector<Result<ValueView>> NodeSession::channel_get_many(const SessionState& st,
                                                             std::span<const std::string_view> keys,
                                                             uint64_t epoch, Steady::time_point d) {
  std::vector<Result<ValueView>> results;
  results.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    results.emplace_back(Status(Code::kInternal, "channel: item not answered"));
  }
  ChannelClient& chan = *st.channel;
  // Chunks that fit one slot's request, and leave each item room for a small answer.
  struct Chunk {
    size_t first = 0, count = 0;
    ChannelClient::Ticket ticket;
    Status submitted;
  };
  std::vector<Chunk> chunks;
  std::vector<size_t> one_by_one;
  const size_t budget = chan.slot_bytes() - ch::kRequestHeaderBytes;
  const size_t max_items = (chan.slot_bytes() - ch::kResponseHeaderBytes) / (ch::kResultBytes + 64);
  for (size_t i = 0; i < keys.size();) {
    Chunk c;
    c.first = i;
    size_t used = 0;
    while (i < keys.size() && c.count < max_items &&
           used + ch::kItemBytes + keys[i].size() <= budget) {
      used += ch::kItemBytes + keys[i].size();
      ++c.count;
      ++i;
    }
    if (c.count == 0) {  // a key too long for a slot: alone, below
      one_by_one.push_back(i++);
      continue;
    }
    chunks.push_back(c);
  }
  // Post into as many slots as are free (at least one) before waiting for any; one doorbell per
  // round. Only the first submit of a round waits for a slot, so callers that share the
  // channel never wait for each other's slots while holding some.
  for (size_t next = 0; next < chunks.size();) {
    size_t end = std::min(chunks.size(), next + chan.slot_count());
    for (size_t k = next; k < end; ++k) {
      ch::Request rq;
      rq.op = ch::Op::kGetMany;
      rq.map_epoch = epoch;
      for (size_t j = 0; j < chunks[k].count; ++j) {
        rq.items.push_back(ch::ItemRef{keys[chunks[k].first + j], 0, 0, 0});
      }
      auto t = chan.submit(std::move(rq), d, /*wait_for_slot=*/k == next);
      if (t) {
        chunks[k].ticket = *t;
      } else if (k > next && t.status().code() == Code::kResourceExhausted) {
        end = k;  // no slot free now: wait for what this round posted
      } else {
        chunks[k].submitted = t.status();
      }
    }
    chan.ring();
    for (size_t k = next; k < end; ++k) {
      Chunk& c = chunks[k];
      auto fail_all = [&](const Status& s) {
        for (size_t j = 0; j < c.count; ++j) results[c.first + j] = s;
      };
      if (!c.submitted.is_ok()) {
        fail_all(c.submitted);
        continue;
      }
      auto keep = std::make_shared<std::string>();
      if (Status s = chan.wait(c.ticket, d, keep.get()); !s.is_ok()) {
        fail_all(s);
        continue;
      }
      auto r = ch::decode_response(std::span(reinterpret_cast<const std::byte*>(keep->data()),
                                             keep->size()),
                                   chan.slot_bytes());
      if (!r || r->generation != c.ticket.generation) {
        fail_all(r ? Status(Code::kInternal, "channel: the answer names another request")
                   : r.status());
        continue;
      }
      if (Status s = status_of(*r); !s.is_ok()) {
        fail_all(s);
        continue;
      }
      if (r->results.size() != c.count) {
        fail_all(Status(Code::kInternal, "channel: GET_MANY answer with a wrong item count"));
        continue;
      }
      for (size_t j = 0; j < c.count; ++j) {
        const ch::ResultRef& res = r->results[j];
        const size_t idx = c.first + j;
        if (res.code == Code::kOk && (res.flags & ch::kFlagInline)) {
          const auto* data = reinterpret_cast<const std::byte*>(res.inline_bytes.data());
          results[idx] = ValueView(keep, data, res.inline_bytes.size(), false);
        } else if (res.code == Code::kOk || res.code == Code::kFailedPrecondition) {
          // Too large for the slot, deferred, or a refusal whose detail (wrong owner) the
          // channel's item record does not carry: ask again over gRPC, below.
          one_by_one.push_back(idx);
        } else {
          results[idx] = status_of(res, keys[idx]);
        }
      }
    }
    next = end;
  }
  if (one_by_one.empty()) return results;
  // Values a slot cannot carry go the gRPC batch way, which manages the receive buffer for a
  // whole batch (it copies earlier views out to make room instead of waiting on them).
  std::vector<std::string_view> rest;
  rest.reserve(one_by_one.size());
  for (size_t idx : one_by_one) rest.push_back(keys[idx]);
  auto more = client::get_many(batch_channel(st, epoch), rest);
  for (size_t j = 0; j < one_by_one.size(); ++j) results[one_by_one[j]] = std::move(more[j]);
  return results;
}

}  // namespace kvrdma::client
