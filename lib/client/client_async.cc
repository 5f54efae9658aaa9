// Pipelining: Client::get_async / put_async and Client::Batch post requests into the request
// channel of their key's node session (the home one outside cluster mode, the owner's by the
// current map in it) and wait for them later, so one thread keeps many in flight; a batch rings
// each node's doorbell once. What the channel cannot carry, and every answer that says "ask
// elsewhere" (a moved slot, a lost session, a node gone), goes the blocking way
// (Client::Impl::get / put), which routes, re-opens sessions and refreshes the map.
#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <optional>

#include "client/client_impl.h"
#include "client/node_session.h"
#include "cluster/slot_map.h"
#include "common/logging.h"
#include "rpc/status_map.h"

namespace kvrdma {

namespace ch = kvrdma::channel;
using client::NodeSession;
using client::SessionState;

struct Pending::State {
  Client::Impl* impl = nullptr;
  ch::Op op = ch::Op::kGet;
  std::string key, value;  // kept for the blocking way
  uint64_t ttl_ms = 0;
  std::chrono::steady_clock::time_point deadline;
  std::shared_ptr<const SessionState> session;  // keeps the channel alive while in flight
  client::ChannelClient::Ticket ticket;
  std::optional<Result<std::string>> outcome;  // known: ran the blocking way at the submit
  std::string answer;                          // the completion bytes once arrived
  Status failed;                               // the channel's wait for the answer failed
  bool in_flight = false, arrived = false, done = false;

  ~State() {
    if (in_flight && !arrived) session->channel->abandon(ticket);
  }

  // Waits for the completion (or its failure); the slot is freed whatever the outcome.
  void collect() {
    failed = session->channel->wait(ticket, deadline, &answer);
    arrived = true;
  }

  // The blocking call: for what the channel did not carry, or where its answer sends us.
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
    if (!failed.is_ok()) {
      // A node gone in cluster mode: the blocking way refreshes the map and asks the new owner,
      // as a blocking call that met the dead node would.
      if (failed.code() == Code::kUnavailable && impl->in_cluster()) return fallback();
      return failed;
    }
    auto r = ch::decode_response(std::span(reinterpret_cast<const std::byte*>(answer.data()),
                                           answer.size()),
                                 session->channel->slot_bytes());
    if (!r) return r.status().with_context("channel: the server's answer");
    if (r->generation != ticket.generation || r->slot != ticket.slot || r->op != op) {
      return Status(Code::kInternal, "channel: the answer names another request");
    }
    Status whole = client::status_of(*r);
    // These answers prove nothing ran: a lost session (the blocking way re-opens it), a refusal
    // by a node that does not own the key (its slot moved: the blocking way follows the refusal
    // and refreshes the map), and a write refused because its slot keeps replicas (the channel
    // does not replicate: the blocking way sends it over gRPC).
    if (client::session_gone(whole) || rpc::wrong_owner_of(whole) ||
        rpc::is_replicated_slot(whole)) {
      return fallback();
    }
    if (!whole.is_ok()) return whole;
    if (op == ch::Op::kPut) return std::string();
    if (r->results.size() != 1) return Status(Code::kInternal, "channel: GET without a result");
    const ch::ResultRef& res = r->results[0];
    if (Status s = client::status_of(res, key); !s.is_ok()) return s;
    if (res.flags & ch::kFlagInline) return std::string(res.inline_bytes);
    return fallback();  // too large for a slot: offer buffer space the blocking way
  }
};

// Pending's constructor, for this file only.
struct PendingAccess {
  static Pending make(std::unique_ptr<Pending::State> st) { return Pending(std::move(st)); }
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
  if (!st.arrived) st.collect();
  log::Scope scope(st.impl->logger());
  return st.finish();
}

Result<std::pair<std::shared_ptr<NodeSession>, uint64_t>> Client::Impl::async_route(
    std::string_view key, bool read) {
  std::pair<std::shared_ptr<NodeSession>, uint64_t> route{home_, 0};
  if (cluster_) {
    auto map = current_map();
    const uint32_t slot = cluster::slot_of(key);
    // A GET spreads over the slot's copies by read_from, as a blocking one does, unless this
    // client saw a write of the slot acknowledged: a channel request carries no min_version, so
    // that read goes to the primary, which holds every acknowledged write (read-your-writes).
    const bool wrote = !acked_.empty() && acked_[slot].load(std::memory_order_acquire) != 0;
    const uint32_t id = read && !wrote ? read_node(*map, slot) : map->owner_of(slot);
    auto s = copy_session(*map, slot, id);
    if (!s) return s.status();
    route = {std::move(*s), map->epoch};
  }
  // A node's session opens on first use (one Hello), as for a blocking call.
  KVRDMA_RETURN_IF_ERROR(route.first->ensure_open(deadline()));
  return route;
}

std::vector<ChannelUse> Client::Impl::channel_use() const {
  std::vector<ChannelUse> out;
  for (const auto& s : sessions()) {
    auto st = s->current();
    if (!st || !st->channel) continue;
    out.push_back(ChannelUse{s->address(), st->channel->requests_posted(), st->channel->rings()});
  }
  std::sort(out.begin(), out.end(),
            [](const ChannelUse& a, const ChannelUse& b) { return a.address < b.address; });
  return out;
}

namespace {

// Posts requests into their node sessions' channels without ringing; flush() then rings each
// channel posted into once and runs what the channel did not carry. Used by one thread for one
// submit; the states it is given outlive it.
class Poster {
 public:
  explicit Poster(Client::Impl& impl) : impl_(impl) {}

  // Posts `st`'s request, or sets it aside for the blocking way: an empty key (its error), a key
  // with no session or no usable channel, a PUT above the inline threshold, a request larger than
  // a slot, a link that failed, or every slot of the channel held by other callers.
  void post(Pending::State& st) {
    st.impl = &impl_;
    st.deadline = std::chrono::steady_clock::now() + impl_.timeout();
    if (st.key.empty()) return blocking_.push_back(&st);
    auto route = impl_.async_route(st.key, st.op == ch::Op::kGet);
    std::shared_ptr<const SessionState> session = route ? route->first->current() : nullptr;
    if (!session || !session->channel || !session->channel->usable()) {
      return blocking_.push_back(&st);  // the blocking way also reports a routing failure
    }
    // Values above the inline threshold go two-phase, never over the channel.
    if (st.op == ch::Op::kPut && st.value.size() > client::put_inline_threshold(session->hello)) {
      return blocking_.push_back(&st);
    }
    ch::Request rq;
    rq.op = st.op;
    rq.key = st.key;
    rq.value = st.value;
    rq.ttl_ms = st.ttl_ms;
    rq.map_epoch = route->second;
    if (ch::encoded_size(rq) > session->channel->slot_bytes()) return blocking_.push_back(&st);
    Node& node = node_for(session);
    // Each failed try with slots of this submit in flight collects the oldest of them, freeing
    // its slot: bounded by how many this submit holds.
    for (;;) {
      auto t = session->channel->submit(rq, st.deadline, /*wait_for_slot=*/false);
      if (t) {
        st.session = std::move(session);
        st.ticket = *t;
        st.in_flight = true;
        node.unrung = true;
        node.in_flight.push_back(&st);
        return;
      }
      // The link failed (the blocking way finds out why, or carries it over gRPC), or every slot
      // is held by other callers (the blocking way: gRPC while no slot is free).
      if (t.status().code() != Code::kResourceExhausted || node.in_flight.empty()) {
        return blocking_.push_back(&st);
      }
      // This submit holds slots here: ring for everything posted so far (no node waits on
      // another's unrung requests), then collect the oldest answer to free its slot.
      for (Node& n : nodes_) ring(n);
      Pending::State* oldest = node.in_flight.front();
      node.in_flight.pop_front();
      oldest->collect();
      // Answers that arrived meanwhile free their slots too, without waiting (fewer rings).
      std::erase_if(node.in_flight, [](Pending::State* s) {
        s->arrived = s->session->channel->poll(s->ticket, &s->answer);
        return s->arrived;
      });
    }
  }

  // Rings each channel posted into since the last flush, once, then runs the set-aside requests
  // (after the ring, so the posted ones are served meanwhile).
  void flush() {
    for (Node& n : nodes_) ring(n);
    for (Pending::State* st : blocking_) st->outcome = st->fallback();
    blocking_.clear();
  }

 private:
  struct Node {
    std::shared_ptr<const SessionState> session;
    bool unrung = false;
    std::deque<Pending::State*> in_flight;  // posted by this submit, not collected; oldest first
  };

  Node& node_for(const std::shared_ptr<const SessionState>& session) {
    for (Node& n : nodes_) {
      if (n.session == session) return n;
    }
    nodes_.push_back(Node{session, false, {}});
    return nodes_.back();
  }
  static void ring(Node& n) {
    if (!n.unrung) return;
    n.session->channel->ring();
    n.unrung = false;
  }

  Client::Impl& impl_;
  std::deque<Node> nodes_;  // one per node session met (few); deque: references stay valid
  std::vector<Pending::State*> blocking_;
};

std::unique_ptr<Pending::State> make_state(ch::Op op, std::string_view key, std::string_view value,
                                           uint64_t ttl_ms) {
  auto st = std::make_unique<Pending::State>();
  st->op = op;
  st->key = std::string(key);
  st->value = std::string(value);
  st->ttl_ms = ttl_ms;
  return st;
}

Pending submit_one(Client::Impl& impl, std::unique_ptr<Pending::State> st) {
  Poster poster(impl);
  poster.post(*st);
  poster.flush();
  return PendingAccess::make(std::move(st));
}

}  // namespace

Pending Client::get_async(std::string_view key) {
  log::Scope scope(impl_->logger());
  return submit_one(*impl_, make_state(ch::Op::kGet, key, {}, 0));
}

Pending Client::put_async(std::string_view key, std::string_view value, uint64_t ttl_ms) {
  log::Scope scope(impl_->logger());
  return submit_one(*impl_, make_state(ch::Op::kPut, key, value, ttl_ms));
}

std::vector<ChannelUse> Client::channel_use() const { return impl_->channel_use(); }

Client::Batch Client::batch() { return Batch(impl_.get()); }

Client::Batch::Batch(Batch&&) noexcept = default;
Client::Batch& Client::Batch::operator=(Batch&&) noexcept = default;
Client::Batch::~Batch() = default;

Client::Batch& Client::Batch::get(std::string_view key) {
  items_.push_back(Item{false, std::string(key), {}, 0});
  return *this;
}

Client::Batch& Client::Batch::put(std::string_view key, std::string_view value, uint64_t ttl_ms) {
  items_.push_back(Item{true, std::string(key), std::string(value), ttl_ms});
  return *this;
}

std::vector<Pending> Client::Batch::submit() {
  log::Scope scope(impl_->logger());
  std::vector<std::unique_ptr<Pending::State>> states;
  states.reserve(items_.size());
  Poster poster(*impl_);
  for (Item& item : items_) {
    auto st = std::make_unique<Pending::State>();
    st->op = item.put ? ch::Op::kPut : ch::Op::kGet;
    st->key = std::move(item.key);
    st->value = std::move(item.value);
    st->ttl_ms = item.ttl_ms;
    poster.post(*st);
    states.push_back(std::move(st));
  }
  items_.clear();
  poster.flush();
  std::vector<Pending> out;
  out.reserve(states.size());
  for (auto& st : states) out.push_back(PendingAccess::make(std::move(st)));
  return out;
}

}  // namespace kvrdma
