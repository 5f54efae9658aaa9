#include "server/channel_service.h"

#include <fmt/format.h>

#include <pthread.h>

#include <algorithm>

#include "channel/codec.h"
#include "channel/fabric_link.h"
#include "channel/mock_link.h"
#include "common/logging.h"

namespace kvrdma::server {

namespace ch = kvrdma::channel;

struct ChannelService::Entry {
  // The link goes some time after its session does: until then its requests are answered
  // "session lost" (the client re-opens the session, with a new channel).
  std::weak_ptr<Session> session;
  ch::Clock::time_point lost_since{};
  uint64_t session_id = 0;
  std::unique_ptr<ch::ServerLink> link;
};

namespace {

// Requests taken from one link per pass: a busy client cannot starve the others.
constexpr size_t kPerPass = 16;
// GET_MANY items per request (a slot bounds it further).
constexpr size_t kMaxItems = 1024;
// A sleeping channel thread looks at its links at least this often (drops ended sessions).
constexpr auto kSleepCap = std::chrono::seconds(1);
constexpr auto kMaxDeadline = std::chrono::seconds(60);
// How long the link of an ended session still answers (with "session lost").
constexpr auto kLostLinger = std::chrono::seconds(10);

// Writes `response` into the slot; a response too large for it (a long error message) is sent
// again with the message cut to fit.
void deliver(ch::ServerLink& link, const ch::IncomingRequest& in, ch::Response response) {
  response.slot = in.slot;
  response.generation = in.generation;
  std::string bytes;
  Status s = ch::encode(response, link.slot_bytes(), &bytes);
  if (!s.is_ok()) {
    response.results.clear();
    response.code = response.code == Code::kOk ? Code::kInternal : response.code;
    response.message = response.message.substr(0, 256);
    if (ch::encoded_size(response) > link.slot_bytes()) response.detail = {};
    (void)ch::encode(response, link.slot_bytes(), &bytes);
  }
  (void)link.complete(in.slot, in.generation,
                      std::span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
}

ch::Response failure(ch::Op op, const Status& s) {
  ch::Response r;
  r.op = op;
  r.code = s.code();
  r.message = s.message();
  r.detail = s.detail();
  return r;
}

ch::ResultRef result_of(Code code, bool is_inline, bool written, bool deferred, uint64_t len,
                        const std::string& value) {
  ch::ResultRef r;
  r.code = code;
  r.flags = (is_inline ? ch::kFlagInline : 0) | (written ? ch::kFlagWritten : 0) |
            (deferred ? ch::kFlagDeferred : 0);
  r.value_len = len;
  if (is_inline) r.inline_bytes = value;
  return r;
}

Result<std::unique_ptr<ch::LinkHost>> make_host(transport::Transport& t) {
  if (ch::uses_shared_memory_link(t.kind())) return ch::make_mock_link_host();
  // libfabric tcp, verbs, efa: messages on the transport's endpoint (docs/channel-fabric.md).
  if (ch::fabric_link_allowed(t)) return ch::make_fabric_link_host(t);
  return Status(Code::kFailedPrecondition,
                fmt::format("no request channel over transport '{}' yet", t.kind()));
}

}  // namespace

Result<std::unique_ptr<ChannelService>> ChannelService::start(ServerCore& core,
                                                              KvService& service) {
  auto host = make_host(*core.transport);
  if (!host) return host.status();
  std::unique_ptr<ChannelService> cs(new ChannelService(core, service, std::move(*host)));
  ChannelService* self = cs.get();
  core.open_channel = [self](std::shared_ptr<Session> session, std::string_view offer,
                             std::string* accept) {
    return self->open(std::move(session), offer, accept);
  };
  return cs;
}

ChannelService::ChannelService(ServerCore& core, KvService& service,
                               std::unique_ptr<ch::LinkHost> host)
    : core_(core), service_(service), host_(std::move(host)) {
  const log::Logger* logger = &log::current();
  thread_ = std::thread([this, logger] {
    pthread_setname_np(pthread_self(), kThreadName);
    log::Scope scope(logger);
    run();
  });
}

ChannelService::~ChannelService() {
  core_.open_channel = nullptr;
  stop_.store(true);
  host_->wake();
  if (thread_.joinable()) thread_.join();
}

Status ChannelService::open(std::shared_ptr<Session> session, std::string_view offer,
                            std::string* accept) {
  auto link = host_->open(offer, accept);
  if (!link) return link.status();
  auto e = std::make_shared<Entry>();
  e->session = session;
  e->session_id = session->id;
  e->link = std::move(*link);
  {
    std::lock_guard lock(mu_);
    added_.push_back(std::move(e));
  }
  host_->wake();
  return Status::ok();
}

void ChannelService::run() {
  const auto poll = std::chrono::microseconds(core_.options.poll_us);
  auto last_work = ch::Clock::now();
  while (!stop_.load(std::memory_order_relaxed)) {
    if (scan() > 0) {
      last_work = ch::Clock::now();
      continue;
    }
    if (ch::Clock::now() - last_work < poll) continue;
    host_->prepare_sleep();
    if (scan() > 0) {  // a request posted before NEED_WAKEUP was visible
      host_->cancel_sleep();
      last_work = ch::Clock::now();
      continue;
    }
    if (stop_.load()) break;
    host_->sleep(ch::Clock::now() + kSleepCap);
    wakeups_.fetch_add(1, std::memory_order_relaxed);
    last_work = ch::Clock::now();
  }
}

size_t ChannelService::scan() {
  {
    std::lock_guard lock(mu_);
    if (!added_.empty()) {
      for (auto& e : added_) links_.push_back(std::move(e));
      added_.clear();
    }
  }
  size_t n = 0;
  for (size_t i = 0; i < links_.size();) {
    std::shared_ptr<Entry> e = links_[i];
    if (e->session.expired()) {  // Goodbye, or the lease ran out
      const auto now = ch::Clock::now();
      if (e->lost_since == ch::Clock::time_point{}) e->lost_since = now;
      if (now - e->lost_since > kLostLinger) {
        links_.erase(links_.begin() + static_cast<std::ptrdiff_t>(i));
        continue;
      }
    }
    n += e->link->take(kPerPass, [&](const ch::IncomingRequest& in) { serve(e, in); });
    ++i;
  }
  return n;
}

void ChannelService::serve(const std::shared_ptr<Entry>& e, const ch::IncomingRequest& in) {
  ch::ServerLink& link = *e->link;
  const size_t slot_bytes = link.slot_bytes();
  auto decoded = ch::decode_request(in.bytes, slot_bytes, kMaxItems);
  if (!decoded) return deliver(link, in, failure(ch::Op::kGet, decoded.status()));
  const ch::Request& rq = *decoded;
  if (rq.slot != in.slot || rq.generation != in.generation) {
    return deliver(link, in,
                   failure(rq.op, Status(Code::kInvalidArgument,
                                         "channel: request names another slot or "
                                         "generation than the one it was posted in")));
  }
  auto uses_region = [](uint32_t r) { return r != 0; };
  if (uses_region(rq.dest_region) ||
      std::any_of(rq.items.begin(), rq.items.end(),
                  [&](const ch::ItemRef& it) { return uses_region(it.dest_region); })) {
    return deliver(link, in,
                   failure(rq.op, Status(Code::kInvalidArgument,
                                         "channel: dest_region other than 0 (the "
                                         "receive buffer) is not supported")));
  }
  auto timeout = rq.timeout_ms ? std::chrono::milliseconds(rq.timeout_ms)
                               : std::chrono::milliseconds(kMaxDeadline);
  const auto deadline = ch::Clock::now() + std::min<ch::Clock::duration>(timeout, kMaxDeadline);
  // What fits a completion besides the headers: inline values larger than this are written by
  // the transport (or the client asks again with room for them).
  const uint64_t room = slot_bytes - ch::kResponseHeaderBytes - ch::kResultBytes;
  switch (rq.op) {
    case ch::Op::kGet: {
      v1::GetRequest req;
      req.set_session_id(e->session_id);
      req.set_key(std::string(rq.key));
      req.set_dest_offset(rq.dest_offset);
      req.set_dest_capacity(rq.dest_capacity);
      req.set_map_epoch(rq.map_epoch);
      auto reply = std::make_shared<v1::GetReply>();
      auto answer = [e, in, reply](Status s) {
        if (!s.is_ok()) return deliver(*e->link, in, failure(ch::Op::kGet, s));
        ch::Response r;
        r.op = ch::Op::kGet;
        r.results.push_back(result_of(Code::kOk, reply->is_inline(), reply->written(), false,
                                      reply->value_len(), reply->value()));
        deliver(*e->link, in, std::move(r));
      };
      auto now = service_.serve_get(req, reply.get(), deadline, answer, room);
      if (now) answer(*now);
      return;
    }
    case ch::Op::kGetMany: {
      v1::GetManyRequest req;
      req.set_session_id(e->session_id);
      req.set_map_epoch(rq.map_epoch);
      for (const ch::ItemRef& it : rq.items) {
        v1::GetManyItem* item = req.add_items();
        item->set_key(std::string(it.key));
        item->set_dest_offset(it.dest_offset);
        item->set_dest_capacity(it.dest_capacity);
      }
      const uint64_t fixed = ch::kResponseHeaderBytes + rq.items.size() * ch::kResultBytes;
      const uint64_t budget = fixed < slot_bytes ? slot_bytes - fixed : 0;
      // Each failed item may carry no message on the channel (only its code), so the budget
      // for inline values is what the records leave.
      auto reply = std::make_shared<v1::GetManyReply>();
      auto answer = [e, in, reply](Status s) {
        if (!s.is_ok()) return deliver(*e->link, in, failure(ch::Op::kGetMany, s));
        ch::Response r;
        r.op = ch::Op::kGetMany;
        for (const v1::GetManyResult& res : reply->results()) {
          const Code code = static_cast<Code>(res.status().code());
          r.results.push_back(result_of(code, res.is_inline(), res.written(), res.deferred(),
                                        res.value_len(), res.value()));
        }
        deliver(*e->link, in, std::move(r));
      };
      auto now = service_.serve_get_many(req, reply.get(), deadline, answer, budget, budget);
      if (now) answer(*now);
      return;
    }
    case ch::Op::kPut: {
      v1::PutRequest req;
      req.set_session_id(e->session_id);
      req.set_key(std::string(rq.key));
      req.set_value(std::string(rq.value));
      req.set_ttl_ms(rq.ttl_ms);
      req.set_map_epoch(rq.map_epoch);
      Status s = service_.serve_put(req);
      ch::Response r = failure(ch::Op::kPut, s);
      return deliver(link, in, std::move(r));
    }
    case ch::Op::kDelete: {
      v1::DeleteRequest req;
      req.set_session_id(e->session_id);
      req.set_key(std::string(rq.key));
      req.set_map_epoch(rq.map_epoch);
      v1::DeleteReply reply;
      Status s = service_.serve_delete(req, &reply, deadline);
      return deliver(link, in, failure(ch::Op::kDelete, s));
    }
  }
}

}  // namespace kvrdma::server
