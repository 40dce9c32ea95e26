// SessionCache: one worker's keep-alive sessions, keyed by origin.
//
// Each worker thread owns exactly one cache and is the only thread that touches
// it, so there is no lock and no ownership check on the hit path: Acquire is a
// hash lookup and a list splice. Sessions are dropped, and the drop counted
// with its reason, when they are Broken() (consecutive errors), Exhausted()
// (max_requests_per_session), idle longer than keepalive_timeout, evicted as
// least recently used beyond max_sessions, or when the cache is destroyed
// (shutdown). Dropping for errors also forgets the host's DNS answer, so an
// upstream that moved is found again.
//
// Usage (on the owning worker):
//   HttpSession& session = cache.Acquire(request.origin);
//   auto response = session.Send(request, deadline);
//   cache.Release(session);
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
#include "service/http_session.h"
#include "service/session_observer.h"

namespace egress {

struct SessionCacheOptions {
  size_t max_sessions = 256;
  std::chrono::nanoseconds keepalive_timeout = std::chrono::seconds(30);
  SessionOptions session;
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

  // The session for `origin`, created when there is none or when the cached one
  // has been idle longer than keepalive_timeout (that one is dropped as kIdle).
  // The reference stays valid until the next call to Acquire, Release or
  // DropIdle.
  HttpSession& Acquire(const Origin& origin);

  // Called after each use of a session from Acquire: drops it when it is
  // Broken() (kErrors) or Exhausted() (kMaxRequests).
  void Release(HttpSession& session);

  // Drops every session idle longer than keepalive_timeout, closing its
  // connection. A worker calls this while it waits for work.
  void DropIdle();

  size_t size() const { return lru_.size(); }

 private:
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
