#include "server/replication.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/logging.h"
#include "rpc/status_map.h"

namespace kvrdma::server {

using cluster::kNoNode;
using std::chrono::milliseconds;

namespace {

// Pushes in flight at once: each worker blocks in one peer call at a time.
constexpr int kWorkers = 16;
// One attempt at a replica (PeerSession retries inside it); the map is looked at between them.
constexpr auto kAttempt = std::chrono::milliseconds(500);
constexpr auto kPause = std::chrono::milliseconds(20);

}  // namespace

Replication::Replication(ServerCore& core)
    : core_(core), self_(core.cluster->self()), logger_(&log::current()) {}

void Replication::start_workers() {
  if (!workers_.empty()) return;
  for (int i = 0; i < kWorkers; ++i) {
    workers_.emplace_back([this] {
      log::Scope s(logger_);
      worker();
    });
  }
}

Replication::~Replication() { stop(); }

void Replication::stop() {
  std::deque<Task> left;
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    left.swap(tasks_);
    workers.swap(workers_);
  }
  cv_.notify_all();
  for (Task& t : left) finish(t, Status(Code::kUnavailable, "the node is stopping"));
  for (auto& t : workers) {
    if (t.joinable()) t.join();
  }
  std::map<uint32_t, std::shared_ptr<PeerSession>> closing;  // Goodbyes outside the lock
  std::lock_guard lock(sessions_mu_);
  closing.swap(sessions_);
}

bool Replication::replicates(std::string_view key) const {
  auto m = core_.cluster->map();
  const uint32_t slot = cluster::slot_of(key);
  return m->replicas > 1 && (m->owner_of(slot) == self_ || m->next_owner_of(slot) == self_);
}

uint64_t Replication::next_version(uint64_t current, std::string_view key) {
  auto m = core_.cluster->map();
  // A slot's next owner writes after its owner's hand-off, in the same epoch: its versions sit
  // one epoch up, so they order after every version the owner issued.
  const uint64_t epoch = m->epoch + (m->next_owner_of(cluster::slot_of(key)) == self_ ? 1 : 0);
  const uint64_t mine =
      (epoch << kCounterBits) | ((counter_.fetch_add(1) + 1) & ((uint64_t{1} << kCounterBits) - 1));
  return std::max(mine, current + 1);
}

void Replication::write(std::string_view key, bool erase, const std::function<Status()>& apply,
                        Steady::time_point deadline, Done done) {
  // A push never outlives kMaxPushTime: a replica keeps tombstones only a little longer.
  deadline = std::min(deadline, Steady::now() + VersionTable::kMaxPushTime);
  auto w = std::make_shared<Write>();
  Status applied;
  versions_.with_key(
      key,
      [&](uint64_t current) -> uint64_t {
        applied = apply();
        if (!applied.is_ok()) return 0;
        w->version = next_version(current, key);
        if (!erase) {
          // Under the key's order nothing else changed it: this is the value just stored.
          auto ref = core_.store->get(key);
          if (ref) w->ref = std::move(*ref);
        }
        return w->version;
      },
      erase);
  if (!applied.is_ok()) return done(applied, 0);
  w->key = std::string(key);
  w->slot = cluster::slot_of(key);
  w->erase = erase;
  w->deadline = deadline;
  w->done = std::move(done);
  std::vector<uint32_t> replicas;
  auto m = core_.cluster->map();
  for (uint32_t i = 0; i < m->seats(); ++i) {
    if (uint32_t r = m->replica_of(w->slot, i); r != kNoNode) replicas.push_back(r);
  }
  // A value gone right after it was stored (evicted or expired) has nothing to copy; a later
  // write of the key reaches the replicas as usual.
  const bool gone = !erase && w->ref.data() == nullptr;
  if (replicas.empty() || gone) {
    w->ref = store::ValueRef();
    return w->done(Status(), w->version);
  }
  w->left = static_cast<int>(replicas.size());
  {
    std::lock_guard lock(mu_);
    if (!stop_) {
      start_workers();  // on the first replicated write: a cluster of R = 1 runs none
      for (uint32_t r : replicas) tasks_.push_back(Task{w, r});
      replicas.clear();
    }
  }
  for (uint32_t r : replicas) {  // stopping: never queued
    Task t{w, r};
    finish(t, Status(Code::kUnavailable, "the node is stopping"));
  }
  cv_.notify_all();
}

void Replication::finish(Task& task, Status s) {
  Write& w = *task.write;
  if (!s.is_ok()) {
    std::lock_guard lock(w.mu);
    if (w.outcome.is_ok()) w.outcome = std::move(s);
  }
  if (w.left.fetch_sub(1) != 1) return;
  w.ref = store::ValueRef();  // unpin before the client hears back
  Status outcome;
  {
    std::lock_guard lock(w.mu);
    outcome = w.outcome;
  }
  w.done(outcome, w.version);
}

void Replication::worker() {
  for (;;) {
    Task task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
      if (stop_) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    Write& w = *task.write;
    finish(task,
           push_to(task.replica, w.slot, w.key, w.erase ? nullptr : &w.ref, w.version, w.deadline));
  }
}

Status Replication::push_to(uint32_t node, uint32_t slot, std::string_view key,
                            const store::ValueRef* ref, uint64_t version,
                            Steady::time_point deadline) {
  Status last;
  for (int attempt = 0; attempt < 10000; ++attempt) {
    auto m = core_.cluster->map();
    if ((m->owner_of(slot) != self_ && m->next_owner_of(slot) != self_) ||
        !core_.cluster->serving()) {
      return Status(Code::kUnavailable,
                    fmt::format("node {} no longer owns slot {} (map epoch {}); the write was not "
                                "acknowledged by every replica: retry it at the new owner",
                                self_, slot, m->epoch));
    }
    const cluster::NodeInfo* n = m->node(node);
    if (m->replica_seat(slot, node) < 0 || n == nullptr) return Status();  // no copy any more
    if (Steady::now() >= deadline) {
      return Status(Code::kUnavailable,
                    fmt::format("replica node {} of slot {} did not take the write in time: {}; "
                                "retry the write",
                                node, slot, last.message()));
    }
    const auto until = std::min(deadline, Steady::now() + kAttempt);
    auto s = session(*n);
    if (s) {
      if (ref != nullptr) {
        last = (*s)->put(key, *ref, core_.store->ttl_left(*ref), m->epoch, until, version);
        if (last.is_ok()) add_bytes_pushed(ref->size());
      } else {
        last = (*s)->erase(key, m->epoch, until, version);
      }
      if (last.is_ok()) return last;
    } else {
      last = s.status();
    }
    std::this_thread::sleep_for(std::min<Steady::duration>(kPause, deadline - Steady::now()));
  }
  return last;
}

Result<std::shared_ptr<PeerSession>> Replication::session(const cluster::NodeInfo& node) {
  {
    std::lock_guard lock(sessions_mu_);
    auto it = sessions_.find(node.id);
    if (it != sessions_.end() && it->second->peer().address == node.address) return it->second;
  }
  // Opened outside the lock: dialling a dead replica must not hold up pushes to live ones.
  auto opened = PeerSession::open(core_, self_, node, Steady::now() + kAttempt);
  if (!opened) return opened.status();
  std::shared_ptr<PeerSession> s = std::move(*opened);
  std::shared_ptr<PeerSession> replaced;  // closed (Goodbye) outside the lock
  std::lock_guard lock(sessions_mu_);
  auto& slot = sessions_[node.id];
  if (slot && slot->peer().address == node.address) return slot;  // another worker won
  replaced = std::exchange(slot, s);
  return s;
}

Status Replication::refusal(const cluster::SlotMap& m, uint32_t slot, std::string_view why) const {
  v1::WrongOwner w;
  w.set_slot(slot);
  w.set_owner_id(m.owner_of(slot));
  if (const cluster::NodeInfo* n = m.node(m.owner_of(slot))) w.set_owner_address(n->address);
  w.set_epoch(m.epoch);
  return rpc::wrong_owner(w, fmt::format("node {} refuses a replicated write for slot {}: {} "
                                         "(map epoch {})",
                                         self_, slot, why, m.epoch));
}

Status Replication::admit_push(const Session& from, std::string_view key,
                               uint64_t pusher_epoch) const {
  if (from.peer_node == 0) {
    return Status(Code::kInvalidArgument,
                  "replica_version is for writes a cluster node pushes to its replicas over a "
                  "node session; a client leaves it 0");
  }
  if (!core_.cluster->serving()) {
    return Status(Code::kUnavailable, fmt::format("node {} is not serving (lease lost)", self_));
  }
  const uint32_t sender = from.peer_node - 1, slot = cluster::slot_of(key);
  auto m = core_.cluster->map();
  if (pusher_epoch > m->epoch) {
    return refusal(*m, slot,
                   fmt::format("node {} pushes by map epoch {}, newer than this node's", sender,
                               pusher_epoch));
  }
  if (m->owner_of(slot) != sender && m->next_owner_of(slot) != sender) {
    return refusal(*m, slot, fmt::format("node {} is not its owner", sender));
  }
  if (m->replica_seat(slot, self_) < 0 && m->next_owner_of(slot) != self_) {
    return refusal(*m, slot, "this node is not one of its replicas");
  }
  return Status();
}

bool Replication::moves_forward(std::string_view key, uint64_t current, uint64_t version) {
  if (fenced_off(cluster::slot_of(key), version)) return false;  // from before a fill's drop
  if (version != current) return version > current;
  // The same write again (a fill after a live push, or a copy that left this node: moved out,
  // evicted) restores the value when it is gone; a delete's tombstone has a version no PUT shares.
  return !core_.store->get(key).is_ok();
}

Status Replication::apply_put(const Session& from, const v1::PutRequest& req) {
  KVRDMA_RETURN_IF_ERROR(admit_push(from, req.key(), req.map_epoch()));
  Status out;
  versions_.with_key(req.key(), [&](uint64_t current) -> uint64_t {
    if (!moves_forward(req.key(), current, req.replica_version())) return 0;
    out = core_.store->put(req.key(), req.value(), milliseconds(req.ttl_ms()));
    return out.is_ok() ? req.replica_version() : 0;
  });
  if (out.is_ok()) core_.counters.bytes_inline_received += req.value().size();
  return out;
}

Status Replication::apply_commit(const Session& from, Reservation r) {
  // The map epoch was checked at PutBegin; this node's map only moves forward since.
  KVRDMA_RETURN_IF_ERROR(admit_push(from, r.key, 0));
  Status out;
  const uint64_t len = r.length;
  versions_.with_key(r.key, [&](uint64_t current) -> uint64_t {
    if (!moves_forward(r.key, current, r.replica_version)) return 0;  // `r` frees it
    out = core_.store->commit(r.key, std::move(r.allocation), len, r.ttl);
    return out.is_ok() ? r.replica_version : 0;
  });
  if (out.is_ok()) core_.counters.bytes_put_committed += len;
  return out;
}

Status Replication::apply_delete(const Session& from, const v1::DeleteRequest& req, bool* existed) {
  KVRDMA_RETURN_IF_ERROR(admit_push(from, req.key(), req.map_epoch()));
  *existed = false;
  versions_.with_key(
      req.key(),
      [&](uint64_t current) -> uint64_t {
        if (current >= req.replica_version()) return 0;
        if (fenced_off(cluster::slot_of(req.key()), req.replica_version())) return 0;
        *existed = core_.store->erase(req.key());
        return req.replica_version();  // a tombstone: an older PUT pushed late stays out
      },
      true);
  return Status();
}

Result<uint64_t> Replication::drop_for_fill(const Session& from, uint64_t pusher_epoch,
                                            std::span<const uint32_t> slots) {
  if (from.peer_node == 0) {
    return Status(Code::kInvalidArgument,
                  "DropReplicaSlots is for a cluster node filling its replicas, over a node "
                  "session; a client never sends it");
  }
  if (!core_.cluster->serving()) {
    return Status(Code::kUnavailable, fmt::format("node {} is not serving (lease lost)", self_));
  }
  if (slots.empty() || slots.size() > cluster::kSlots) {
    return Status(Code::kInvalidArgument,
                  fmt::format("DropReplicaSlots names {} slots; give 1 to {}", slots.size(),
                              cluster::kSlots));
  }
  const uint32_t sender = from.peer_node - 1;
  // One at a time: a drop the sender gave up on (its deadline passed) and sent again must not
  // still be erasing while the fill after the second one copies keys in.
  std::lock_guard one(drop_mu_);
  // Whether `slot` is still a seat of this node the sender may drop, by map `m`.
  auto droppable = [&](const cluster::SlotMap& m, uint32_t slot) -> Status {
    if (m.owner_of(slot) != sender) {
      return refusal(m, slot, fmt::format("node {} is not its owner", sender));
    }
    const int seat = m.replica_seat(slot, self_);
    if (seat < 0) return refusal(m, slot, "this node is not one of its replicas");
    if (m.replica_ready_of(slot, static_cast<uint32_t>(seat))) {
      return Status(Code::kFailedPrecondition,
                    fmt::format("node {}'s replica of slot {} is ready in map epoch {}: it keeps "
                                "what it holds",
                                self_, slot, m.epoch));
    }
    return Status();
  };
  auto m = core_.cluster->map();
  std::vector<bool> drop(cluster::kSlots, false);
  for (uint32_t slot : slots) {
    if (slot >= cluster::kSlots) {
      return Status(Code::kInvalidArgument,
                    fmt::format("slot {} is outside 0..{}", slot, cluster::kSlots - 1));
    }
    if (pusher_epoch > m->epoch) {
      return refusal(*m, slot,
                     fmt::format("node {} fills by map epoch {}, newer than this node's", sender,
                                 pusher_epoch));
    }
    KVRDMA_RETURN_IF_ERROR(droppable(*m, slot));
    drop[slot] = true;
  }
  // The fence first: from here no push issued before the sender's map `pusher_epoch` lands.
  // Versions carry the epoch they were issued in (next_version), the fill's are above it.
  const uint64_t fence = pusher_epoch << kCounterBits;
  for (uint32_t slot : slots) {
    uint64_t was = fence_[slot].load(std::memory_order_acquire);
    while (was < fence && !fence_[slot].compare_exchange_weak(was, fence)) {
    }
  }
  // Values only, each under its key's order; versions and tombstones stay.
  auto in = [&](std::string_view key) { return drop[cluster::slot_of(key)]; };
  uint64_t dropped = 0;
  size_t seen = 0;
  for (const std::string& k : core_.store->keys_where(in)) {
    if (++seen % 64 == 0) {  // still a not-ready seat: a promoted replica keeps its values
      auto now = core_.cluster->map();
      if (now != m) {
        for (uint32_t slot : slots) KVRDMA_RETURN_IF_ERROR(droppable(*now, slot));
        m = std::move(now);
      }
    }
    versions_.with_key(k, [&](uint64_t) -> uint64_t {
      dropped += core_.store->erase(k);
      return 0;  // the version stays as it is
    });
  }
  if (dropped > 0) {
    KVRDMA_LOG_INFO("node {} dropped {} values of {} replica slots before node {} fills them",
                    self_, dropped, slots.size(), sender);
  }
  return dropped;
}

std::optional<Replication::Copy> Replication::copy_for_fill(std::string_view key) {
  std::optional<Copy> out;
  versions_.with_key(key, [&](uint64_t current) -> uint64_t {
    auto got = core_.store->get(key);
    if (!got) return 0;  // deleted or expired: a delete is pushed live
    // A fresh version, above every one this node issued or applied for the key so far: the
    // value is the key's latest here (read under its order), so it must win over any older push
    // or tombstone at the replica, and a key that came by a move carries no version of its own.
    out = Copy{std::move(*got), next_version(current, key)};
    return out->version;
  });
  return out;
}

Status Replication::check_read(std::string_view key, uint64_t min_version) const {
  const uint32_t slot = cluster::slot_of(key);
  auto m = core_.cluster->map();
  if (m->owner_of(slot) == self_ || min_version <= versions_.slot_version(slot)) return Status();
  v1::WrongOwner w;
  w.set_slot(slot);
  w.set_owner_id(m->owner_of(slot));
  if (const cluster::NodeInfo* n = m->node(m->owner_of(slot))) w.set_owner_address(n->address);
  w.set_epoch(m->epoch);
  w.set_moved(true);
  return rpc::wrong_owner(w, fmt::format("replica node {} has not applied version {} of slot {} "
                                         "yet; ask the primary, node {}",
                                         self_, min_version, slot, m->owner_of(slot)));
}

}  // namespace kvrdma::server
