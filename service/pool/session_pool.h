// SessionPool: the shared tier of the session pool, where idle keep-alive
// sessions wait for whichever worker needs their origin next.
//
// Each worker keeps the one session it used last in its own SessionCache (the
// first tier: no lock). Every other idle session lives here, owned by the pool
// alone: a worker whose own session is for another origin Parks it here and
// Takes one of the call's origin, so a warm connection is found by any worker
// within one lock, and the number of connections follows the calls in flight,
// not the number of workers.
//
// The pool is cut into shards by a hash of the origin, each with its own mutex
// and its own list of sessions in the order they were last used, so critical
// sections are a few list and map operations. Sessions are bounded per origin
// (max_idle_per_origin) and in all (max_idle_connections); over either bound
// the least recently used idle session is dropped as kEvicted. A janitor
// thread drops sessions idle longer than keepalive_timeout (kIdle) every
// janitor_interval, whether or not any worker is busy. Take skips, and drops,
// a session idle for defaults::kCheckIdleAfter or more whose connection the
// upstream closed meanwhile (kUpstreamClosed): no call is lent a dead socket
// the pool could have known about. (httplib checks the socket again before it
// writes a request, and reconnects, so a connection closed sooner loses no
// request.) Sessions are destroyed (their connections closed) outside the
// locks.
//
// Usage:
//   SessionPool pool(options, clock, observer);
//   std::unique_ptr<HttpSession> s = pool.Take(origin.Key());  // or nullptr
//   ... s->Exchange(...) ...
//   pool.Park(std::move(s));
//
// Thread safety: thread-safe. A session is owned by exactly one place at a
// time (a worker's cache, its lease, or one shard of this pool), so it is never
// used by two threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "service/base/clock.h"
#include "service/base/defaults.h"
#include "service/transport/http_session.h"
#include "service/transport/session_observer.h"

namespace egress {

struct SessionPoolOptions {
  // Idle sessions kept for one origin, across all workers.
  size_t max_idle_per_origin = defaults::kMaxIdlePerOrigin;
  // Idle sessions kept in all.
  size_t max_idle_connections = defaults::kMaxIdleConnections;
  std::chrono::nanoseconds keepalive_timeout = defaults::kKeepaliveTimeout;
  // How often the janitor drops expired sessions; zero: no janitor thread
  // (tests call DropExpired themselves).
  std::chrono::nanoseconds janitor_interval = defaults::kJanitorIntervalMax;
  size_t shards = defaults::kPoolShards;
  // Where a session dropped for errors has its host's DNS answer forgotten;
  // may be null.
  DnsCache* dns = nullptr;
};

// Destroys `session` (closing its connection) and counts the drop: the one
// way a session ends, whichever tier held it. kErrors also forgets the host's
// DNS answer (`dns` may be null): a host that keeps failing may have moved.
void DropSession(std::unique_ptr<HttpSession> session, DropReason reason,
                 bool idle, DnsCache* dns, SessionObserver& observer);

class SessionPool {
 public:
  // REQUIRES: `clock` and `observer` outlive the pool.
  SessionPool(const SessionPoolOptions& options, const Clock& clock,
              SessionObserver& observer);
  // Stops the janitor and drops every session with reason kShutdown.
  ~SessionPool();
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // The most recently used idle session of `key` (HttpSession::pool_key())
  // that is still fresh and whose connection the upstream has not closed, or
  // nullptr. Stale ones met on the way are dropped (kIdle, kUpstreamClosed).
  // The caller owns the result and reports it busy.
  std::unique_ptr<HttpSession> Take(const std::string& key);

  // Parks an idle session (state kReady) for any worker to take. Over
  // max_idle_per_origin (or the session's own max_idle) or
  // max_idle_connections, the least recently used
  // session (of the origin, or of all) is dropped as kEvicted.
  void Park(std::unique_ptr<HttpSession> session);

  // Drops every session idle longer than keepalive_timeout; returns how many.
  // The janitor calls this every janitor_interval.
  size_t DropExpired();

  // Drops every idle session with `reason`.
  void DropAll(DropReason reason);

  // Idle sessions parked now.
  size_t idle() const { return idle_.load(std::memory_order_relaxed); }

  const SessionPoolOptions& options() const { return options_; }

 private:
  struct Entry {
    std::unique_ptr<HttpSession> session;  // its last_used() orders the lists
  };
  using List = std::list<Entry>;
  struct Shard {
    std::mutex mu;
    // Every session of the shard, least recently used first.
    List lru;  // guarded by mu
    // Origin key → its sessions in lru, least recently used first.
    absl::flat_hash_map<std::string, std::deque<List::iterator>>
        by_origin;  // guarded by mu
    // Sessions in lru with a keep-alive timeout of their own.
    size_t own_keepalive = 0;  // guarded by mu
  };

  Shard& ShardOf(const std::string& key);
  // Moves the shard's entry `it` out of it. REQUIRES: shard.mu held.
  std::unique_ptr<HttpSession> Remove(Shard& shard, List::iterator it);
  // Drops the least recently used session of the whole pool, if any.
  void EvictOldest();
  bool Expired(const Entry& entry, MonoTime now) const;
  void RunJanitor();

  const SessionPoolOptions options_;
  const Clock& clock_;
  SessionObserver& observer_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<size_t> idle_{0};

  std::mutex janitor_mu_;
  std::condition_variable janitor_cv_;
  bool stopping_ = false;  // guarded by janitor_mu_
  std::thread janitor_;
};

}  // namespace egress
