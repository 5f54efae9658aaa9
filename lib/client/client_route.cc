// Client::Impl's data calls and the routing behind them (docs/cluster.md, Clients): outside
// cluster mode every call goes to the one server untouched; in cluster mode a key goes to its
// slot's owner, and a refusal or a dead owner costs one map refresh and one retry.
#include <fmt/format.h>

#include <atomic>
#include <future>
#include <numeric>
#include <random>
#include <set>
#include <system_error>

#include "client/call_versions.h"
#include "client/client_impl.h"
#include "cluster/placement.h"
#include "common/logging.h"
#include "rpc/status_map.h"

namespace kvrdma {

using client::NodeSession;

namespace {

Status status_of(const Status& s) { return s; }
template <class T>
Status status_of(const Result<T>& r) {
  return r ? Status() : r.status();
}

// Runs one node's part of a batch read with the thread's slot_versions set to `acked` (each
// item then carries this client's acknowledged version of its slot: read your writes at a
// replica); null when the map keeps no replicas (every read is at a primary, and a batch may ride
// the request channel, which carries no versions).
template <class F>
auto with_slot_versions(const std::atomic<uint64_t>* acked, F f) {
  client::call_versions().slot_versions = acked;
  auto got = f();
  client::call_versions().slot_versions = nullptr;
  return got;
}

Status empty_key() { return Status(Code::kInvalidArgument, "key is empty; give a non-empty key"); }

Status no_owner(uint32_t slot, uint64_t epoch) {
  return Status(Code::kUnavailable,
                fmt::format("slot {} has no reachable owner in cluster map epoch {}; the cluster "
                            "is reassigning it; retry shortly",
                            slot, epoch));
}

// A key refused again after its one retry: its slot is moving faster than the map reaches us.
// UNAVAILABLE, so callers retry as for any transient failure; the detail is kept.
Status refused_twice(const Status& refusal) {
  return Status(Code::kUnavailable,
                fmt::format("{}; refused again after a map refresh: the cluster is changing; "
                            "retry",
                            refusal.message()),
                refusal.detail());
}

}  // namespace

std::shared_ptr<const cluster::SlotMap> Client::Impl::current_map() const {
  std::lock_guard lock(map_mu_);
  return map_;
}

Result<std::shared_ptr<NodeSession>> Client::Impl::session_for(uint32_t id,
                                                               const std::string& address) {
  {
    std::shared_lock lock(sessions_mu_);
    auto it = by_id_.find(id);
    if (it != by_id_.end() && it->second.address == address) return it->second.session;
  }
  std::shared_ptr<NodeSession> s;
  std::unique_lock lock(sessions_mu_);
  const std::string target = client::grpc_target(address);
  if (auto it = by_address_.find(target); it != by_address_.end()) {
    s = it->second;
  } else {
    auto made = NodeSession::create(address, options_, transport_, this);
    if (!made) return made.status();
    s = std::move(*made);
    by_address_[target] = s;
  }
  by_id_[id] = SessionRef{address, s};
  return s;
}

Result<std::shared_ptr<NodeSession>> Client::Impl::copy_session(const cluster::SlotMap& map,
                                                                uint32_t slot, uint32_t id) {
  const cluster::NodeInfo* node = id == cluster::kNoNode ? nullptr : map.node(id);
  if (node == nullptr) return no_owner(slot, map.epoch);
  return session_for(id, node->address);
}

void Client::Impl::prune_sessions() {
  if (!cluster_) return;
  auto map = current_map();
  std::set<std::string> named;
  for (const auto& n : map->nodes) named.insert(client::grpc_target(n.address));
  std::vector<std::shared_ptr<NodeSession>> dropped;  // Goodbye outside the lock
  std::unique_lock lock(sessions_mu_);
  for (auto it = by_address_.begin(); it != by_address_.end();) {
    if (named.count(it->first) > 0 || it->second == home_) {
      ++it;
    } else {
      dropped.push_back(std::move(it->second));
      it = by_address_.erase(it);
    }
  }
  std::erase_if(by_id_, [&](const auto& entry) {
    const SessionRef& ref = entry.second;
    return ref.session != home_ && named.count(client::grpc_target(ref.address)) == 0;
  });
}

Result<cluster::SlotMap> Client::Impl::fetch_map(const std::string& address) {
  std::shared_ptr<NodeSession> s;
  {
    std::shared_lock lock(sessions_mu_);
    if (auto it = by_address_.find(client::grpc_target(address)); it != by_address_.end()) {
      s = it->second;
    }
  }
  if (!s) {
    // A probe channel, kept: a session with that node later reuses it.
    auto made = NodeSession::create(address, options_, transport_, this);
    if (!made) return made.status();
    std::unique_lock lock(sessions_mu_);
    s = by_address_.try_emplace(client::grpc_target(address), std::move(*made)).first->second;
  }
  // A dead node fails fast (connection refused); a silent one costs at most this.
  const auto d = std::min(deadline(), Steady::now() + std::chrono::seconds(2));
  auto reply = s->cluster_map(d);
  if (!reply) return reply.status();
  return cluster::from_proto(*reply);
}

std::shared_ptr<const cluster::SlotMap> Client::Impl::refresh_map(std::string_view first,
                                                                  uint64_t want_epoch) {
  std::lock_guard refresh(refresh_mu_);
  auto known = current_map();
  if (known->epoch >= want_epoch) return known;  // another thread got it meanwhile
  // A refusal naming the owner is evidence of a newer map: always worth asking.
  if (first.empty() && Steady::now() - fruitless_refresh_ < kRefreshQuiet) return known;
  std::vector<std::string> order;
  auto add = [&order](std::string_view a) {
    if (!a.empty() && std::find(order.begin(), order.end(), a) == order.end()) {
      order.emplace_back(a);
    }
  };
  add(first);
  for (const auto& n : known->nodes) add(n.address);
  for (const auto& a : seeds_) add(a);
  auto newest =
      client::newest_map(order, want_epoch, [this](const std::string& a) { return fetch_map(a); });
  if (!newest) {
    KVRDMA_LOG_WARN("cluster map refresh failed: {}", newest.status().message());
    fruitless_refresh_ = Steady::now();
    return known;
  }
  if (newest->epoch <= known->epoch) {
    fruitless_refresh_ = Steady::now();
    return known;
  }
  auto installed = std::make_shared<const cluster::SlotMap>(std::move(*newest));
  std::lock_guard lock(map_mu_);
  map_ = installed;
  return installed;
}

Client::Impl::Retry Client::Impl::after_failure(const Status& failed, uint32_t slot, uint32_t at_id,
                                                uint64_t epoch) {
  Retry retry;
  auto wrong = rpc::wrong_owner_of(failed);
  if (wrong && wrong->moved()) {
    // The slot is moving: ask the named node once, keep the map.
    auto s = session_for(wrong->owner_id(), wrong->owner_address());
    if (!s) return Retry{nullptr, 0, s.status()};
    return Retry{std::move(*s), epoch, Status()};
  }
  if (!wrong && failed.code() != Code::kUnavailable) return retry;  // not a routing matter
  std::string first;
  uint64_t want = epoch + 1;
  if (wrong) {
    first = wrong->owner_address();
    want = std::max(want, wrong->epoch());
  }
  auto map = refresh_map(first, want);
  const uint32_t owner = map->owner_of(slot);
  const cluster::NodeInfo* node = owner == cluster::kNoNode ? nullptr : map->node(owner);
  if (owner == at_id || node == nullptr) {
    if (!wrong) return retry;  // the owner is down and still the owner: callers retry
    retry.fail = Status(Code::kUnavailable,
                        fmt::format("node {} refused slot {} but is still its owner by the newest "
                                    "cluster map (epoch {}); the cluster is changing; retry",
                                    at_id, slot, map->epoch));
    return retry;
  }
  auto s = session_for(owner, node->address);
  if (!s) return Retry{nullptr, 0, s.status()};
  return Retry{std::move(*s), map->epoch, Status()};
}

uint32_t Client::Impl::read_node(const cluster::SlotMap& map, uint32_t slot) const {
  const uint32_t owner = map.owner_of(slot);
  if (options_.read_from == ReadFrom::kPrimary || !map.has_replicas() ||
      owner == cluster::kNoNode) {
    return owner;
  }
  std::vector<uint32_t> copies{owner};
  for (uint32_t i = 0; i < map.seats(); ++i) {
    const uint32_t r = map.replica_of(slot, i);
    if (r != cluster::kNoNode && map.replica_ready_of(slot, i) && map.node(r) != nullptr) {
      copies.push_back(r);
    }
  }
  if (options_.read_from == ReadFrom::kNearest) {
    std::vector<uint32_t> near;
    for (uint32_t id : copies) {
      const cluster::NodeInfo* n = map.node(id);
      if (n != nullptr && client::is_local_host(cluster::host_of(n->address))) near.push_back(id);
    }
    if (!near.empty()) copies.swap(near);
  }
  thread_local std::minstd_rand pick(std::random_device{}());
  return copies[pick() % copies.size()];
}

void Client::Impl::note_acked(uint32_t slot) {
  const uint64_t v = std::exchange(client::call_versions().acked, 0);
  if (v == 0 || acked_.empty()) return;
  std::atomic<uint64_t>& max = acked_[slot];
  uint64_t seen = max.load(std::memory_order_relaxed);
  while (seen < v && !max.compare_exchange_weak(seen, v, std::memory_order_acq_rel)) {
  }
}

void Client::Impl::note_acked_batch() {
  std::vector<std::pair<uint32_t, uint64_t>> acked;
  acked.swap(client::call_versions().acked_slots);
  for (const auto& [slot, version] : acked) {
    client::call_versions().acked = version;
    note_acked(slot);
  }
}

template <class Op>
auto Client::Impl::routed(std::string_view key, Op op, bool read)
    -> decltype(op(std::declval<NodeSession&>(), uint64_t{})) {
  const uint32_t slot = cluster::slot_of(key);
  auto map = current_map();
  // A GET may go to a filled replica (read_from); it carries what this client saw acknowledged
  // in the slot, so a replica that lags redirects it to the primary.
  client::call_versions().min_version = read && !acked_.empty() ? acked_[slot].load() : 0;
  client::call_versions().acked = 0;
  // A write of a replicated slot goes over gRPC (the request channel does not replicate);
  // replicas are a property of the whole cluster, so every map agrees. Cleared on return: the
  // thread may run other clients' calls next.
  struct Replicated {
    explicit Replicated(bool on) { client::call_versions().replicated = on; }
    ~Replicated() { client::call_versions().replicated = false; }
  } replicated(map->has_replicas());
  uint32_t asked = read ? read_node(*map, slot) : map->owner_of(slot);
  auto s = copy_session(*map, slot, asked);
  if (!s) {
    map = refresh_map({}, map->epoch + 1);
    asked = read ? read_node(*map, slot) : map->owner_of(slot);
    s = copy_session(*map, slot, asked);
    if (!s) return s.status();
  }
  auto r = op(**s, map->epoch);
  Status failed = status_of(r);
  if (failed.is_ok()) {
    if (!read) note_acked(slot);
    return r;
  }
  // The node routed to by the map (its Hello may not have answered: a dead node).
  Retry retry = after_failure(failed, slot, asked, map->epoch);
  if (!retry.session) {
    if (!retry.fail.is_ok()) return retry.fail;
    return r;
  }
  auto again = op(*retry.session, retry.epoch);
  if (Status st = status_of(again); rpc::wrong_owner_of(st)) return refused_twice(st);
  if (!read && status_of(again).is_ok()) note_acked(slot);
  return again;
}

// The groups of one round run in parallel, one thread per node (the last on the caller's):
// at most as many threads as the map has nodes.
template <class Item, class R, class Run>
std::vector<R> Client::Impl::run_grouped(std::span<const Item> items,
                                         std::span<const uint32_t> slots, Run run, bool read) {
  std::vector<R> results;
  results.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    results.emplace_back(Status(Code::kInternal, "not sent"));
  }
  std::vector<uint32_t> sent_to(items.size(), cluster::kNoNode);
  struct Round {
    client::OwnerGroup group;
    uint64_t epoch = 0;
  };
  auto run_one = [&](const Round& round) {
    const client::OwnerGroup& g = round.group;
    Result<std::shared_ptr<NodeSession>> s = no_owner(slots[g.items.front()], round.epoch);
    if (g.node != cluster::kNoNode) s = session_for(g.node, g.address);
    if (!s) {
      for (size_t i : g.items) results[i] = s.status();
      return;
    }
    std::vector<Item> part;
    part.reserve(g.items.size());
    for (size_t i : g.items) {
      part.push_back(items[i]);
      sent_to[i] = g.node;
    }
    auto got = run(**s, std::span<const Item>(part), round.epoch);
    client::scatter(g, got, results);
  };
  auto run_all = [&](const std::vector<Round>& rounds) {
    std::vector<std::future<void>> others;
    for (size_t g = 0; g + 1 < rounds.size(); ++g) {
      try {
        others.push_back(std::async(std::launch::async, [&, g] {
          log::Scope scope(logger());  // this client's level on the helper thread too
          run_one(rounds[g]);
        }));
      } catch (const std::system_error&) {
        run_one(rounds[g]);  // no thread to be had: this group runs on the caller's
      }
    }
    if (!rounds.empty()) run_one(rounds.back());
    for (auto& f : others) f.get();
  };

  auto map = current_map();
  std::vector<size_t> all(items.size());
  std::iota(all.begin(), all.end(), size_t{0});
  std::vector<Round> rounds;
  std::vector<client::OwnerGroup> first;
  if (read && map->has_replicas() && options_.read_from != ReadFrom::kPrimary) {
    // Per item, as a GET picks: a hot key's reads spread over its copies.
    std::vector<uint32_t> nodes(items.size());
    for (size_t i = 0; i < items.size(); ++i) nodes[i] = read_node(*map, slots[i]);
    first = client::group_by_node(nodes, all, *map);
  } else {
    first = client::group_by_owner(slots, all, *map);
  }
  for (auto& g : first) rounds.push_back({std::move(g), map->epoch});
  run_all(rounds);

  std::vector<Status> statuses;
  statuses.reserve(results.size());
  for (const auto& r : results) statuses.push_back(status_of(r));
  client::Refused refused = client::refused_items(statuses);
  if (refused.empty()) return results;
  rounds.clear();
  for (auto& g : refused.moved) rounds.push_back({std::move(g), map->epoch});
  if (!refused.stale.empty()) {
    std::string first;  // the owner a refusal named, when one did
    uint64_t want = map->epoch + 1;
    for (size_t i : refused.stale) {
      if (auto w = rpc::wrong_owner_of(statuses[i])) {
        if (first.empty()) first = w->owner_address();
        want = std::max(want, w->epoch());
      }
    }
    auto newer = refresh_map(first, want);
    for (auto& g : client::group_by_owner(slots, refused.stale, *newer)) {
      // Items whose owner did not change keep their failure (a refusal from a node that is
      // still the owner: the cluster is changing).
      std::erase_if(g.items, [&](size_t i) {
        if (sent_to[i] != g.node) return false;
        if (rpc::wrong_owner_of(statuses[i])) {
          results[i] = Status(Code::kUnavailable,
                              fmt::format("node {} refused the key but is still its owner by the "
                                          "newest cluster map (epoch {}); the cluster is "
                                          "changing; retry",
                                          g.node, newer->epoch));
        }
        return true;
      });
      if (!g.items.empty()) rounds.push_back({std::move(g), newer->epoch});
    }
  }
  run_all(rounds);
  for (auto& r : results) {
    if (Status st = status_of(r); rpc::wrong_owner_of(st)) r = refused_twice(st);
  }
  return results;
}

Result<ValueView> Client::Impl::get(std::string_view key) {
  if (key.empty()) return empty_key();
  if (!cluster_) {
    auto r = home_->get(key, 0);
    if (!r) renew_buffer_if_retired();
    return r;
  }
  auto r = routed(
      key, [key](NodeSession& s, uint64_t epoch) { return s.get(key, epoch); }, true);
  if (!r) renew_buffer_if_retired();
  return r;
}

Status Client::Impl::put(std::string_view key, std::string_view value, uint64_t ttl_ms) {
  if (key.empty()) return empty_key();
  if (!cluster_) return home_->put(key, value, ttl_ms, 0);
  // A two-phase PUT whose PutCommit is refused comes back with the refusal: redone whole.
  return routed(key,
                [&](NodeSession& s, uint64_t epoch) { return s.put(key, value, ttl_ms, epoch); });
}

Status Client::Impl::del(std::string_view key) {
  if (key.empty()) return empty_key();
  if (!cluster_) return home_->del(key, 0);
  return routed(key, [key](NodeSession& s, uint64_t epoch) { return s.del(key, epoch); });
}

std::vector<Result<ValueView>> Client::Impl::get_many(std::span<const std::string_view> keys) {
  std::vector<Result<ValueView>> results;
  if (!cluster_) {
    results = home_->get_many(keys, 0);
  } else {
    std::vector<uint32_t> slots(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) slots[i] = cluster::slot_of(keys[i]);
    // A replica that lags redirects an item this client wrote to the primary.
    const auto* acked = current_map()->has_replicas() ? acked_.data() : nullptr;
    auto run = [acked](NodeSession& s, std::span<const std::string_view> k, uint64_t epoch) {
      return with_slot_versions(acked, [&] { return s.get_many(k, epoch); });
    };
    results = run_grouped<std::string_view, Result<ValueView>>(keys, slots, run, true);
  }
  renew_buffer_if_retired();
  return results;
}

std::vector<Status> Client::Impl::put_many(std::span<const KeyValue> items, uint64_t ttl_ms) {
  // Values above the inline threshold go one by one, routed as a single PUT.
  auto put_one = [this](std::string_view k, std::string_view v, uint64_t ttl) {
    return put(k, v, ttl);
  };
  if (!cluster_) return home_->put_many(items, ttl_ms, 0, put_one);
  std::vector<uint32_t> slots(items.size());
  for (size_t i = 0; i < items.size(); ++i) slots[i] = cluster::slot_of(items[i].key);
  auto run = [&](NodeSession& s, std::span<const KeyValue> part, uint64_t epoch) {
    client::call_versions().acked_slots.clear();
    auto got = s.put_many(part, ttl_ms, epoch, put_one);
    note_acked_batch();  // read your writes, as put records its own
    return got;
  };
  return run_grouped<KeyValue, Status>(items, slots, run);
}

Result<ValueLocation> Client::Impl::locate(std::string_view key) {
  if (key.empty()) return Status(Code::kInvalidArgument, "key is empty; give a non-empty key");
  auto op = [key](NodeSession& s, uint64_t epoch) { return s.locate(key, epoch); };
  auto r = cluster_ ? routed(key, op) : op(*home_, 0);
  if (!r) return r.status().with_context(fmt::format("locating key '{}'", key));
  const v1::ValueLocation& l = r->location();
  ValueLocation out;
  out.node_id = l.node_id();
  out.node_address = l.node_address();
  out.region_descriptor = l.region_descriptor();
  out.offset = l.offset();
  out.length = l.length();
  out.epoch = l.epoch();
  out.slot = l.slot();
  return out;
}

// Caller memory: routed as get / put / get_many / put_many are (each owner, or for reads a
// replica by read_from, writes its keys into their spots).
Result<uint64_t> Client::Impl::get_into(const client::MemGet& item) {
  if (!cluster_) return home_->get_into(item, 0);
  return routed(
      item.key, [&item](NodeSession& s, uint64_t epoch) { return s.get_into(item, epoch); },
      /*read=*/true);
}

Status Client::Impl::put_from(const client::MemPut& item, uint64_t ttl_ms) {
  if (!cluster_) return home_->put_from(item, ttl_ms, 0);
  return routed(item.key,
                [&](NodeSession& s, uint64_t epoch) { return s.put_from(item, ttl_ms, epoch); });
}

std::vector<Result<uint64_t>> Client::Impl::get_many_into(std::span<const client::MemGet> items) {
  if (!cluster_) return home_->get_many_into(items, 0);
  std::vector<uint32_t> slots(items.size());
  for (size_t i = 0; i < items.size(); ++i) slots[i] = cluster::slot_of(items[i].key);
  const auto* acked = current_map()->has_replicas() ? acked_.data() : nullptr;
  auto run = [acked](NodeSession& s, std::span<const client::MemGet> part, uint64_t epoch) {
    return with_slot_versions(acked, [&] { return s.get_many_into(part, epoch); });
  };
  return run_grouped<client::MemGet, Result<uint64_t>>(items, slots, run, /*read=*/true);
}

std::vector<Status> Client::Impl::put_many_from(std::span<const client::MemPut> items,
                                                uint64_t ttl_ms) {
  if (!cluster_) return home_->put_many_from(items, ttl_ms, 0);
  std::vector<uint32_t> slots(items.size());
  for (size_t i = 0; i < items.size(); ++i) slots[i] = cluster::slot_of(items[i].key);
  auto run = [&](NodeSession& s, std::span<const client::MemPut> part, uint64_t epoch) {
    client::call_versions().acked_slots.clear();
    auto got = s.put_many_from(part, ttl_ms, epoch);
    note_acked_batch();  // its inline items report versions as put_many's do
    return got;
  };
  return run_grouped<client::MemPut, Status>(items, slots, run);
}

}  // namespace kvrdma
