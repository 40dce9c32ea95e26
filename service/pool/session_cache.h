// SessionCache: a worker's own tier of the session pool, the one session it
// used last, in front of the shared SessionPool.
//
// Each worker thread owns exactly one cache and is the only thread that touches
// it, so the hit path (the next call is for the origin of the worker's last
// one, as for sequential calls, which the worker pool sends to the worker that
// finished last) takes no lock and validates nothing per call: the worker's
// identity is known to the task that runs on it. (httplib checks the socket
// before it writes a request and reconnects when the upstream closed it.)
// On a miss the worker parks its session in the shared tier and takes one of
// the call's origin from there (one lock each), or makes a new one, which
// connects. A worker idle for a maintenance interval parks its session too
// (Maintain), so no idle session stays out of other workers' reach, or the
// janitor's, for long.
//
// When a lease ends, a session left kBroken (consecutive errors) is dropped as
// kErrors, one left kExhausted (max_requests_per_session) as kMaxRequests, and
// the drop is counted; dropping for errors also forgets the host's DNS answer,
// so an upstream that moved is found again.
//
// A session is lent for one exchange as a SessionLease, whose destructor gives
// it back: there is no path that forgets to.
//
// Usage (on the owning worker):
//   SessionLease session = cache.Lease(request.origin);
//   ExchangeOutcome r = session->Exchange(request, deadline, sink, &canceller);
//   // ~SessionLease: kept for the next call, or dropped and counted
//
// Thread safety: not thread-safe; confined to its worker thread.
#pragma once

#include <chrono>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "service/base/clock.h"
#include "service/base/defaults.h"
#include "service/pool/session_pool.h"
#include "service/transport/http_session.h"
#include "service/transport/session_observer.h"

namespace egress {

struct SessionCacheOptions {
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
  // REQUIRES: `shared`, `clock` and `observer` outlive the cache.
  SessionCache(const SessionCacheOptions& options, SessionPool& shared,
               const Clock& clock, SessionObserver& observer);
  // Drops the worker's session with reason kShutdown.
  ~SessionCache();
  SessionCache(const SessionCache&) = delete;
  SessionCache& operator=(const SessionCache&) = delete;

  // Lends a session for `origin`, made with `route` (an origin entry's
  // options, pooled apart by their pool_tag; nullptr: the cache's own): the
  // worker's own when it is for `origin` and `route` and fresh (else it is
  // dropped as kIdle); else one from the shared tier (whose connection the
  // upstream has not closed); else a new one. A kept session of another
  // origin is parked in the shared tier first. (A new session copies
  // `route`.)
  SessionLease Lease(const Origin& origin,
                     const SessionOptions* route = nullptr);

  // Parks the worker's session in the shared tier. The worker calls this
  // when it has been idle for a maintenance interval, and when it retires.
  void ParkKept();

  // Drops the worker's session with `reason`.
  void DropKept(DropReason reason);

  // Moves the worker's idle session out and returns a job that parks it in
  // the shared tier (empty when there is none). For another thread, while the
  // owning worker is blocked idle and cannot touch the cache (WorkerPool
  // guarantees it under its lock).
  absl::AnyInvocable<void()> DemoteKept();

  // 1 while the worker keeps a session of its own, else 0.
  size_t size() const { return kept_ != nullptr ? 1 : 0; }

 private:
  friend class SessionLease;
  HttpSession& Acquire(const Origin& origin, const SessionOptions* route);
  void Release(HttpSession& session);

  const SessionCacheOptions options_;
  SessionPool& shared_;
  const Clock& clock_;
  SessionObserver& observer_;
  // The session this worker used last; lent, or idle with the worker.
  std::unique_ptr<HttpSession> kept_;
  bool lent_ = false;
};

}  // namespace egress
