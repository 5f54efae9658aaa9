// Client::get_async / put_async: requests posted into the home session's request channel and
// waited for later, so one thread keeps many in flight. Without a channel they run at submit.
#include <fmt/format.h>

#include <optional>

#include "client/client_impl.h"
#include "client/node_session.h"
#include "common/logging.h"

namespace kvrdma {

namespace ch = kvrdma::channel;

struct Pending::State {
  std::optional<Result<std::string>> outcome;  // known: ran at submit, or already waited for
  Client::Impl* impl = nullptr;
  std::shared_ptr<const client::SessionState> session;  // keeps the channel alive
  client::ChannelClient::Ticket ticket;
  ch::Op op = ch::Op::kGet;
  std::string key, value;  // for the blocking fallback
  uint64_t ttl_ms = 0;
  std::chrono::steady_clock::time_point deadline;
  std::string answer;  // the completion bytes once arrived
  bool in_flight = false, arrived = false, done = false;

  ~State() {
    if (in_flight && !arrived) session->channel->abandon(ticket);
  }

  // The blocking call, for what the channel did not carry.
  Result<std::string> fallback() {
    if (op == ch::Op::kPut) {
      Status s = impl->put(key, value, ttl_ms);
      if (!s.is_ok()) return s;
      return std::string();
    }
    auto v = impl->get(key);
    if (!v) return v.status();
    return std::string(v->str());
  }

  Result<std::string> finish() {
    auto r = ch::decode_response(std::span(reinterpret_cast<const std::byte*>(answer.data()),
                                           answer.size()),
                                 session->channel->slot_bytes());
    if (!r) return r.status().with_context("channel: the server's answer");
    if (r->generation != ticket.generation) {
      return Status(Code::kInternal, "channel: the answer names another request");
    }
    Status whole = client::status_of(*r);
    // A lost session proves nothing ran: the blocking path re-opens it and repeats.
    if (client::session_gone(whole)) return fallback();
    if (!whole.is_ok()) return whole;
    if (op == ch::Op::kPut) return std::string();
    if (r->results.size() != 1) return Status(Code::kInternal, "channel: GET without a result");
    const ch::ResultRef& res = r->results[0];
    if (Status s = client::status_of(res, key); !s.is_ok()) return s;
    if (res.flags & ch::kFlagInline) return std::string(res.inline_bytes);
    return fallback();  // too large for a slot: offer buffer space the blocking way
  }
};

Pending::Pending() = default;
Pending::Pending(std::unique_ptr<State> state) : state_(std::move(state)) {}
Pending::Pending(Pending&&) noexcept = default;
Pending& Pending::operator=(Pending&&) noexcept = default;
Pending::~Pending() = default;

bool Pending::ready() {
  if (!state_ || state_->outcome || state_->arrived) return true;
  if (state_->session->channel->poll(state_->ticket, &state_->answer)) state_->arrived = true;
  return state_->arrived;
}

Result<std::string> Pending::wait() {
  if (!state_ || state_->done) {
    return Status(Code::kFailedPrecondition, "Pending::wait on a request already waited for");
  }
  State& st = *state_;
  st.done = true;
  if (st.outcome) return std::move(*st.outcome);
  if (!st.arrived) {
    Status s = st.session->channel->wait(st.ticket, st.deadline, &st.answer);
    st.arrived = true;  // the slot is freed whatever the outcome
    if (!s.is_ok()) return s;
  }
  log::Scope scope(st.impl->logger());
  return st.finish();
}

namespace {

// Posts `rq` into the home session's channel when there is one and it fits (and `may_ride`),
// else runs the blocking call now.
Pending submit(Client::Impl& impl, std::unique_ptr<Pending::State> st, const ch::Request& rq,
               bool may_ride, Pending (*make)(std::unique_ptr<Pending::State>)) {
  st->impl = &impl;
  st->deadline = std::chrono::steady_clock::now() + impl.timeout();
  std::shared_ptr<const client::SessionState> session =
      impl.in_cluster() ? nullptr : impl.home().current();
  const bool fits = may_ride && session && session->channel && session->channel->usable() &&
                    ch::encoded_size(rq) <= session->channel->slot_bytes();
  if (!fits) {
    st->outcome = st->fallback();
    return make(std::move(st));
  }
  auto t = session->channel->submit(rq, st->deadline, /*wait_for_slot=*/false);
  if (!t) {
    // Every slot is held (by this thread's own outstanding requests, perhaps): run it now; the
    // blocking path goes over gRPC while no slot is free.
    st->outcome = t.status().code() == Code::kResourceExhausted ? st->fallback() : t.status();
    return make(std::move(st));
  }
  session->channel->ring();
  st->session = std::move(session);
  st->ticket = *t;
  st->in_flight = true;
  return make(std::move(st));
}

}  // namespace

Pending Client::get_async(std::string_view key) {
  log::Scope scope(impl_->logger());
  auto st = std::make_unique<Pending::State>();
  st->op = ch::Op::kGet;
  st->key = std::string(key);
  ch::Request rq;
  rq.op = ch::Op::kGet;
  rq.key = st->key;
  return submit(*impl_, std::move(st), rq, true,
                [](std::unique_ptr<Pending::State> s) { return Pending(std::move(s)); });
}

Pending Client::put_async(std::string_view key, std::string_view value, uint64_t ttl_ms) {
  log::Scope scope(impl_->logger());
  auto st = std::make_unique<Pending::State>();
  st->op = ch::Op::kPut;
  st->key = std::string(key);
  st->value = std::string(value);
  st->ttl_ms = ttl_ms;
  ch::Request rq;
  rq.op = ch::Op::kPut;
  rq.key = st->key;
  rq.value = st->value;
  rq.ttl_ms = ttl_ms;
  // Values above the inline threshold go two-phase, never over the channel.
  const bool small = value.size() <= inline_threshold();
  return submit(*impl_, std::move(st), rq, small,
                [](std::unique_ptr<Pending::State> s) { return Pending(std::move(s)); });
}

}  // namespace kvrdma
