#include "service/transport/tls_session_store.h"

namespace egress {
namespace {

bool Expired(const SSL_SESSION* session, time_t now) {
  return static_cast<time_t>(SSL_SESSION_get_time(session) +
                             SSL_SESSION_get_timeout(session)) <= now;
}

}  // namespace

// Invariants: every key of origins_ is in lru_ once, and its lru iterator
// points at it; no Origin's deque is empty; size_ is the sum of their sizes.

TlsSessionStore::TlsSessionStore(const TlsSessionStoreOptions& options)
    : options_(options) {}

TlsSessionStore::~TlsSessionStore() {
  for (auto& [key, origin] : origins_) {
    for (SSL_SESSION* session : origin.sessions) SSL_SESSION_free(session);
  }
}

void TlsSessionStore::Forget(
    absl::flat_hash_map<std::string, Origin>::iterator it) {
  for (SSL_SESSION* session : it->second.sessions) SSL_SESSION_free(session);
  size_ -= it->second.sessions.size();
  lru_.erase(it->second.lru);
  origins_.erase(it);
}

void TlsSessionStore::Save(const std::string& key, SSL_SESSION* session) {
  if (!SSL_SESSION_is_resumable(session)) {
    SSL_SESSION_free(session);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = origins_.try_emplace(key);
  Origin& origin = it->second;
  if (inserted) {
    lru_.push_front(key);
  } else {
    lru_.splice(lru_.begin(), lru_, origin.lru);
  }
  origin.lru = lru_.begin();
  origin.sessions.push_back(session);
  ++size_;
  while (origin.sessions.size() > options_.per_origin) {
    SSL_SESSION_free(origin.sessions.front());
    origin.sessions.pop_front();
    --size_;
  }
  while (origins_.size() > options_.max_origins) {
    Forget(origins_.find(lru_.back()));
  }
}

SSL_SESSION* TlsSessionStore::Take(const std::string& key, time_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = origins_.find(key);
  if (it == origins_.end()) return nullptr;
  std::deque<SSL_SESSION*>& sessions = it->second.sessions;
  SSL_SESSION* found = nullptr;
  while (!sessions.empty() && found == nullptr) {
    SSL_SESSION* newest = sessions.back();
    if (Expired(newest, now)) {
      sessions.pop_back();
      --size_;
      SSL_SESSION_free(newest);
    } else if (SSL_SESSION_get_protocol_version(newest) >= TLS1_3_VERSION) {
      sessions.pop_back();  // a TLS 1.3 ticket is used once
      --size_;
      found = newest;
    } else {
      SSL_SESSION_up_ref(newest);
      found = newest;
    }
  }
  if (sessions.empty()) Forget(it);
  return found;
}

size_t TlsSessionStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return size_;
}

}  // namespace egress
