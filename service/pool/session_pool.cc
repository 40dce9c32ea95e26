#include "service/pool/session_pool.h"

#include <algorithm>
#include <functional>
#include <utility>

namespace egress {

// Invariants, per shard: lru is ordered by last_used(), least recently used
// first; every element of lru appears exactly once in by_origin[its session's
// key], and every deque there is in lru's order; a key with no sessions has no
// deque. idle_ is the
// number of elements of all the lru lists (updated under each shard's mu).

void DropSession(std::unique_ptr<HttpSession> session, DropReason reason,
                 bool idle, DnsCache* dns, SessionObserver& observer) {
  if (reason == DropReason::kErrors && dns != nullptr) {
    dns->Invalidate(session->origin().host);
  }
  const std::string& key = session->key();
  observer.OnPoolChange(key, idle ? -1 : 0, idle ? 0 : -1);
  observer.OnSessionDropped(reason);
  session.reset();  // closes its connection
}

SessionPool::SessionPool(const SessionPoolOptions& options, const Clock& clock,
                         SessionObserver& observer)
    : options_(options), clock_(clock), observer_(observer) {
  const size_t shards = std::max<size_t>(options_.shards, 1);
  shards_.reserve(shards);
  for (size_t i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<Shard>());
  }
  if (options_.janitor_interval > std::chrono::nanoseconds::zero()) {
    janitor_ = std::thread([this] { RunJanitor(); });
  }
}

SessionPool::~SessionPool() {
  {
    std::lock_guard<std::mutex> lock(janitor_mu_);
    stopping_ = true;
  }
  janitor_cv_.notify_all();
  if (janitor_.joinable()) janitor_.join();
  DropAll(DropReason::kShutdown);
}

void SessionPool::RunJanitor() {
  std::unique_lock<std::mutex> lock(janitor_mu_);
  while (!janitor_cv_.wait_for(lock, options_.janitor_interval,
                               [this] { return stopping_; })) {
    lock.unlock();
    DropExpired();
    lock.lock();
  }
}

SessionPool::Shard& SessionPool::ShardOf(const std::string& key) {
  return *shards_[std::hash<std::string>{}(key) % shards_.size()];
}

bool SessionPool::Expired(const Entry& entry, MonoTime now) const {
  return now - entry.session->last_used() >
         entry.session->options().keepalive_timeout.value_or(
             options_.keepalive_timeout);
}

std::unique_ptr<HttpSession> SessionPool::Remove(Shard& shard,
                                                 List::iterator it) {
  auto found = shard.by_origin.find(it->session->pool_key());
  std::deque<List::iterator>& mine = found->second;
  // Take removes the newest, eviction and expiry the oldest: no search then.
  if (mine.back() == it) {
    mine.pop_back();
  } else if (mine.front() == it) {
    mine.pop_front();
  } else {
    mine.erase(std::find(mine.begin(), mine.end(), it));
  }
  if (mine.empty()) shard.by_origin.erase(found);
  std::unique_ptr<HttpSession> session = std::move(it->session);
  if (session->options().keepalive_timeout.has_value()) {
    --shard.own_keepalive;
  }
  shard.lru.erase(it);
  idle_.fetch_sub(1, std::memory_order_relaxed);
  return session;
}

std::unique_ptr<HttpSession> SessionPool::Take(const std::string& key) {
  Shard& shard = ShardOf(key);
  for (;;) {
    std::unique_ptr<HttpSession> session;
    bool expired = false;
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      auto found = shard.by_origin.find(key);
      if (found == shard.by_origin.end()) return nullptr;
      // The most recently used: the warmest, and the last to expire.
      List::iterator newest = found->second.back();
      expired = Expired(*newest, clock_.Now());
      session = Remove(shard, newest);
    }
    if (expired) {
      DropSession(std::move(session), DropReason::kIdle, /*idle=*/true,
                  options_.dns, observer_);
      continue;
    }
    // Checked outside the lock, and only after a while: a poll(2) on the
    // socket. (A connection closed sooner is caught by httplib's own check
    // before it writes the request, which then reconnects.)
    if (clock_.Now() - session->last_used() >= defaults::kCheckIdleAfter &&
        !session->IdleConnectionUsable()) {
      DropSession(std::move(session), DropReason::kUpstreamClosed,
                  /*idle=*/true, options_.dns, observer_);
      continue;
    }
    return session;
  }
}

void SessionPool::Park(std::unique_ptr<HttpSession> session) {
  std::unique_ptr<HttpSession> evicted;
  Shard& shard = ShardOf(session->pool_key());
  const size_t max_idle =
      session->options().max_idle.value_or(options_.max_idle_per_origin);
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    const MonoTime used = session->last_used();
    if (session->options().keepalive_timeout.has_value()) {
      ++shard.own_keepalive;
    }
    std::deque<List::iterator>& mine = shard.by_origin[session->pool_key()];
    // Kept in the order of last use (a session is parked soon after its
    // use, so this is nearly always the end).
    List::iterator at = shard.lru.end();
    while (at != shard.lru.begin() &&
           std::prev(at)->session->last_used() > used) {
      --at;
    }
    at = shard.lru.insert(at, Entry{std::move(session)});
    auto mine_at = mine.end();
    while (mine_at != mine.begin() &&
           (*std::prev(mine_at))->session->last_used() > used) {
      --mine_at;
    }
    mine.insert(mine_at, at);
    idle_.fetch_add(1, std::memory_order_relaxed);
    if (mine.size() > max_idle) {
      evicted = Remove(shard, mine.front());
    }
  }
  if (evicted != nullptr) {
    DropSession(std::move(evicted), DropReason::kEvicted, /*idle=*/true,
                options_.dns, observer_);
  }
  while (idle() > options_.max_idle_connections) EvictOldest();
}

void SessionPool::EvictOldest() {
  // Over the bound only: every shard's oldest is looked at, one lock at a time.
  Shard* oldest = nullptr;
  MonoTime oldest_at = MonoTime::max();
  for (const std::unique_ptr<Shard>& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard->mu);
    if (!shard->lru.empty() &&
        shard->lru.front().session->last_used() < oldest_at) {
      oldest_at = shard->lru.front().session->last_used();
      oldest = shard.get();
    }
  }
  if (oldest == nullptr) return;
  std::unique_ptr<HttpSession> evicted;
  {
    std::lock_guard<std::mutex> lock(oldest->mu);
    if (oldest->lru.empty()) return;  // taken meanwhile: look again
    evicted = Remove(*oldest, oldest->lru.begin());
  }
  DropSession(std::move(evicted), DropReason::kEvicted, /*idle=*/true,
              options_.dns, observer_);
}

size_t SessionPool::DropExpired() {
  size_t dropped = 0;
  std::vector<std::unique_ptr<HttpSession>> expired;
  for (const std::unique_ptr<Shard>& shard : shards_) {
    {
      std::lock_guard<std::mutex> lock(shard->mu);
      const MonoTime now = clock_.Now();
      // Least recently used first: stop at the first fresh one, unless
      // some sessions have keep-alive timeouts of their own (origin entries).
      for (auto it = shard->lru.begin(); it != shard->lru.end();) {
        if (Expired(*it, now)) {
          expired.push_back(Remove(*shard, it++));
        } else if (shard->own_keepalive > 0) {
          ++it;
        } else {
          break;
        }
      }
    }
    for (std::unique_ptr<HttpSession>& session : expired) {
      DropSession(std::move(session), DropReason::kIdle, /*idle=*/true,
                  options_.dns, observer_);
      ++dropped;
    }
    expired.clear();
  }
  return dropped;
}

void SessionPool::DropAll(DropReason reason) {
  std::vector<std::unique_ptr<HttpSession>> all;
  for (const std::unique_ptr<Shard>& shard : shards_) {
    {
      std::lock_guard<std::mutex> lock(shard->mu);
      while (!shard->lru.empty()) {
        all.push_back(Remove(*shard, shard->lru.begin()));
      }
    }
    for (std::unique_ptr<HttpSession>& session : all) {
      DropSession(std::move(session), reason, /*idle=*/true, options_.dns,
                  observer_);
    }
    all.clear();
  }
}

}  // namespace egress
