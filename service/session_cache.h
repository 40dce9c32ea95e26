// SessionCache: one worker's keep-alive sessions, keyed by origin.
//
// Each worker thread owns exactly one cache and is the only thread that touches
// it, so there is no lock and no ownership check on the hit path: Acquire is a
// hash lookup and a list splice. Sessions are dropped, and the drop counted
// with its reason, when an exchange left them kBroken (consecutive errors) or
// kExhausted (max_requests_per_session), idle longer than keepalive_timeout,
// evicted as least recently used beyond max_sessions, or when the cache is
// destroyed (shutdown). Dropping for errors also forgets the host's DNS answer,
// so an upstream that moved is found again.
//
// A session is lent for one exchange as a SessionLease, whose destructor gives
// it back: there is no path that forgets to.
//
// Usage (on the owning worker):
//   SessionLease session = cache.Lease(request.origin);
//   auto response = session->Send(request, deadline, &canceller);
//   // ~SessionLease: kept for the next call, or dropped and counted
//
// Thread safety: not thread-safe; confined to its worker thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "service/clock.h"
#include "service/defaults.h"
#include "service/http_session.h"
#include "service/session_observer.h"

namespace egress {

struct SessionCacheOptions {
  size_t max_sessions = defaults::kMaxSessionsPerWorker;
  std::chrono::nanoseconds keepalive_timeout = defaults::kKeepaliveTimeout;
  SessionOptions session;
};

class SessionCache;

// One session lent by its cache. Move-only; the destructor returns the
// session. REQUIRES: destroyed before the next Lease from the same cache.
class SessionLease {
 public:
  SessionLease(SessionLease&& other) noexcept
      : cache_(other.cache_), session_(other.session_) {
    other.cache_ = nullptr;
  }
  SessionLease& operator=(SessionLease&&) = delete;
  ~SessionLease();

  HttpSession& operator*() const { return *session_; }
  HttpSession* operator->() const { return session_; }

 private:
  friend class SessionCache;
  SessionLease(SessionCache& cache, HttpSession& session)
      : cache_(&cache), session_(&session) {}

  SessionCache* cache_;
  HttpSession* session_;
};

class SessionCache {
 public:
  // REQUIRES: `clock` and `observer` outlive the cache.
  SessionCache(const SessionCacheOptions& options, const Clock& clock,
               SessionObserver& observer);
  // Drops every session with reason kShutdown.
  ~SessionCache();
  SessionCache(const SessionCache&) = delete;
  SessionCache& operator=(const SessionCache&) = delete;

  // Lends the session for `origin`, created when there is none or when the
  // cached one has been idle longer than keepalive_timeout (that one is
  // dropped as kIdle). When the lease ends, a session left kBroken is dropped
  // as kErrors, one left kExhausted as kMaxRequests.
  SessionLease Lease(const Origin& origin);

  // Drops every session idle longer than keepalive_timeout, closing its
  // connection. A worker calls this while it waits for work.
  void DropIdle();

  // Drops every session with `reason` (the worker retires).
  void DropAll(DropReason reason);

  size_t size() const { return lru_.size(); }

 private:
  friend class SessionLease;
  HttpSession& Acquire(const Origin& origin);
  void Release(HttpSession& session);

  struct Entry {
    std::string key;
    std::unique_ptr<HttpSession> session;
  };
  using List = std::list<Entry>;

  bool IdleExpired(const HttpSession& session, MonoTime now) const;
  void Drop(List::iterator it, DropReason reason);

  const SessionCacheOptions options_;
  const Clock& clock_;
  SessionObserver& observer_;
  List lru_;  // most recently used first
  absl::flat_hash_map<std::string, List::iterator> index_;
};

}  // namespace egress
