#include "service/pool/session_cache.h"

#include <utility>

namespace egress {

// Invariant: while lent_, kept_ is the session of the live SessionLease and
// counts as busy; otherwise kept_ (when not null) counts as idle.

SessionCache::SessionCache(const SessionCacheOptions& options,
                           SessionPool& shared, const Clock& clock,
                           SessionObserver& observer)
    : options_(options), shared_(shared), clock_(clock), observer_(observer) {}

SessionCache::~SessionCache() { DropKept(DropReason::kShutdown); }

void SessionCache::DropKept(DropReason reason) {
  if (kept_ == nullptr) return;
  DropSession(std::move(kept_), reason, /*idle=*/!lent_, options_.session.dns,
              observer_);
}

void SessionCache::ParkKept() {
  if (kept_ == nullptr || lent_) return;
  shared_.Park(std::move(kept_));
}

absl::AnyInvocable<void()> SessionCache::DemoteKept() {
  if (kept_ == nullptr || lent_) return nullptr;
  return [shared = &shared_, session = std::move(kept_)]() mutable {
    shared->Park(std::move(session));
  };
}

HttpSession& SessionCache::Acquire(const Origin& origin,
                                   const SessionOptions* route) {
  const SessionOptions& options = route != nullptr ? *route : options_.session;
  if (kept_ != nullptr && kept_->origin() == origin &&
      kept_->options().pool_tag == options.pool_tag) {
    // The hit path: no lock, no syscall. (httplib itself checks the socket
    // before it writes the request, and reconnects when the upstream closed
    // it: no request is lost to that either.)
    if (clock_.Now() - kept_->last_used() >
        options.keepalive_timeout.value_or(options_.keepalive_timeout)) {
      DropKept(DropReason::kIdle);
    } else {
      observer_.OnPoolChange(kept_->key(), -1, +1);
      observer_.OnLease(LeaseSource::kLocal);
      return *kept_;
    }
  }
  ParkKept();
  const std::string key = origin.Key();
  kept_ = shared_.Take(PoolKey(key, options.pool_tag));
  if (kept_ != nullptr) {
    observer_.OnPoolChange(key, -1, +1);
    observer_.OnLease(LeaseSource::kShared);
  } else {
    kept_ = std::make_unique<HttpSession>(origin, options, clock_, observer_);
    observer_.OnPoolChange(key, 0, +1);
    observer_.OnLease(LeaseSource::kNew);
  }
  return *kept_;
}

SessionLease::~SessionLease() {
  if (cache_ != nullptr) cache_->Release(*session_);
}

SessionLease SessionCache::Lease(const Origin& origin,
                                 const SessionOptions* route) {
  HttpSession& session = Acquire(origin, route);
  lent_ = true;
  return SessionLease(*this, session);
}

void SessionCache::Release(HttpSession& session) {
  lent_ = false;
  const HttpSession::State state = session.state();
  if (state == HttpSession::State::kBroken ||
      state == HttpSession::State::kExhausted) {
    DropSession(std::move(kept_),
                state == HttpSession::State::kBroken ? DropReason::kErrors
                                                     : DropReason::kMaxRequests,
                /*idle=*/false, options_.session.dns, observer_);
    return;
  }
  observer_.OnPoolChange(session.key(), +1, -1);
}

}  // namespace egress
