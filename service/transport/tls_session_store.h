// TlsSessionStore: TLS sessions (TLS 1.3 tickets, TLS 1.2 session IDs or
// tickets) saved per origin and shared by every worker, so that a new
// connection to an origin resumes an earlier session: an abbreviated
// handshake, with no certificate chain sent or verified again.
//
// A session is offered only to connections of the origin (scheme, host and
// port) whose handshake produced it, and whose certificate and host name were
// verified then. TLS 1.3 tickets are used once (RFC 8446, appendix C.4: reuse
// lets a network observer link connections); TLS 1.2 sessions stay until they
// expire. A session expires with its lifetime (the ticket's lifetime hint, or
// the session timeout). Bounded: at most `per_origin` sessions per origin and
// `max_origins` origins, the least recently saved origin forgotten first.
//
// Usage:
//   TlsSessionStore store;
//   // OpenSSL's new-session callback:  store.Save(origin.Key(), session);
//   // before a handshake:  SSL_SESSION* s = store.Take(origin.Key());
//   //                      if (s) { SSL_set_session(ssl, s);
//   SSL_SESSION_free(s); }
//
// Thread safety: thread-safe (one mutex; Save and Take are a few map
// operations).
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <ctime>
#include <deque>
#include <list>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "service/base/defaults.h"

namespace egress {

struct TlsSessionStoreOptions {
  size_t max_origins = defaults::kTlsSessionOrigins;
  size_t per_origin = defaults::kTlsSessionsPerOrigin;
};

class TlsSessionStore {
 public:
  explicit TlsSessionStore(const TlsSessionStoreOptions& options = {});
  ~TlsSessionStore();
  TlsSessionStore(const TlsSessionStore&) = delete;
  TlsSessionStore& operator=(const TlsSessionStore&) = delete;

  // Saves `session` for origin `key`, taking over the caller's reference.
  // Sessions that cannot be resumed are freed at once.
  void Save(const std::string& key, SSL_SESSION* session);

  // A session of `key` still within its lifetime at `now`, the newest first,
  // with a reference the caller must free; nullptr when there is none.
  SSL_SESSION* Take(const std::string& key, time_t now = time(nullptr));

  // Sessions saved now, in all.
  size_t size() const;

 private:
  struct Origin {
    std::deque<SSL_SESSION*> sessions;  // oldest first
    std::list<std::string>::iterator lru;
  };
  void Forget(absl::flat_hash_map<std::string, Origin>::iterator it);

  const TlsSessionStoreOptions options_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, Origin> origins_;  // guarded by mu_
  std::list<std::string> lru_;  // origin keys, most recently saved first
  size_t size_ = 0;             // guarded by mu_
};

}  // namespace egress
