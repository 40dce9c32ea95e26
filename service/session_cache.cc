#include "service/session_cache.h"

#include <utility>

namespace egress {

// Invariants: every element of lru_ has exactly one index_ entry whose key is
// the element's key and whose value points at it; lru_.size() <= max_sessions
// after every public call.

SessionCache::SessionCache(const SessionCacheOptions& options,
                           const Clock& clock, SessionObserver& observer)
    : options_(options), clock_(clock), observer_(observer) {}

SessionCache::~SessionCache() { DropAll(DropReason::kShutdown); }

void SessionCache::DropAll(DropReason reason) {
  while (!lru_.empty()) Drop(lru_.begin(), reason);
}

bool SessionCache::IdleExpired(const HttpSession& session, MonoTime now) const {
  return now - session.last_used() > options_.keepalive_timeout;
}

void SessionCache::Drop(List::iterator it, DropReason reason) {
  // A host that keeps failing may have moved: look its name up afresh.
  if (reason == DropReason::kErrors && options_.session.dns != nullptr) {
    options_.session.dns->Invalidate(it->session->origin().host);
  }
  index_.erase(it->key);
  lru_.erase(it);  // destroys the session, which closes its connection
  observer_.OnSessionDropped(reason);
}

HttpSession& SessionCache::Acquire(const Origin& origin) {
  std::string key = origin.Key();
  auto found = index_.find(key);
  if (found != index_.end()) {
    List::iterator it = found->second;
    if (!IdleExpired(*it->session, clock_.Now())) {
      lru_.splice(lru_.begin(), lru_, it);
      return *it->session;
    }
    Drop(it, DropReason::kIdle);
  }
  lru_.push_front(Entry{key, std::make_unique<HttpSession>(
                                 origin, options_.session, clock_, observer_)});
  index_.emplace(std::move(key), lru_.begin());
  HttpSession& session = *lru_.front().session;
  while (lru_.size() > options_.max_sessions) {
    Drop(std::prev(lru_.end()), DropReason::kEvicted);
  }
  return session;
}

SessionLease::~SessionLease() {
  if (cache_ != nullptr) cache_->Release(*session_);
}

SessionLease SessionCache::Lease(const Origin& origin) {
  return SessionLease(*this, Acquire(origin));
}

void SessionCache::Release(HttpSession& session) {
  const HttpSession::State state = session.state();
  if (state != HttpSession::State::kBroken &&
      state != HttpSession::State::kExhausted) {
    return;
  }
  auto found = index_.find(session.origin().Key());
  if (found == index_.end() || found->second->session.get() != &session) return;
  Drop(found->second, state == HttpSession::State::kBroken
                          ? DropReason::kErrors
                          : DropReason::kMaxRequests);
}

void SessionCache::DropIdle() {
  const MonoTime now = clock_.Now();
  // Least recently used sit at the back: stop at the first one still fresh.
  while (!lru_.empty() && IdleExpired(*lru_.back().session, now)) {
    Drop(std::prev(lru_.end()), DropReason::kIdle);
  }
}

}  // namespace egress
