// DnsCache: host name → addresses, resolved by the service and cached, so that
// the address a session connects to is one the service chose and checked.
// Every address of an answer is kept, in the resolver's order (getaddrinfo's
// RFC 6724 order): a session tries the next when one does not connect.
//
// Answers are kept for `ttl` (default 600 s), failures for `negative_ttl` (a
// few seconds) so a dead name does not hammer the resolver. The cache is
// bounded: when full, expired entries go first, then the entry that expires
// soonest. Sessions pin the address they got until its expiry, then look it up
// again, so a changed DNS answer takes effect within one TTL; a session dropped
// after errors invalidates its host's entry so a moved upstream is found at
// once.
//
// IP literals are answered as themselves without a lookup.
//
// A lookup runs on a thread of its own, so that a caller stops waiting at its
// deadline (DEADLINE_EXCEEDED) while getaddrinfo, which cannot be interrupted,
// finishes in the background and still fills the cache. Callers that want the
// same name at once share one lookup; at most `max_inflight` run at a time.
//
// Usage:
//   DnsCache dns(SystemResolver(), RealClock::Get(), {});
//   absl::StatusOr<DnsCache::Answer> a = dns.Lookup("example.com");
//
// Thread safety: thread-safe. Lookups happen when a session is created or its
// pin expires, not per request, so a mutex is cheap here. The resolver is
// called without the lock held.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "service/base/clock.h"
#include "service/base/deadline.h"
#include "service/base/defaults.h"

namespace egress {

// Turns a host name into addresses (numeric strings, IPv4 or IPv6).
class Resolver {
 public:
  virtual ~Resolver() = default;
  // Every address of the name, in order of preference, none twice; at least
  // one. UNAVAILABLE naming the host when the name does not resolve.
  virtual absl::StatusOr<std::vector<std::string>> Resolve(
      const std::string& host) = 0;
};

// getaddrinfo(3): /etc/hosts, then the configured name servers.
class SystemResolver final : public Resolver {
 public:
  absl::StatusOr<std::vector<std::string>> Resolve(
      const std::string& host) override;
};

struct DnsCacheOptions {
  std::chrono::nanoseconds ttl = defaults::kDnsTtl;
  std::chrono::nanoseconds negative_ttl = defaults::kDnsNegativeTtl;
  size_t max_entries = defaults::kDnsCacheSize;
  // Lookups running at once; more are refused (UNAVAILABLE) rather than
  // starting ever more threads for a flood of distinct names.
  size_t max_inflight = defaults::kDnsMaxInflight;
};

class DnsCache {
 public:
  struct Answer {
    // Numeric ("93.184.216.34", "2606:2800::1"), in the resolver's order.
    std::vector<std::string> addresses;
    MonoTime expires;  // use them until then
  };

  // REQUIRES: resolver and clock outlive the cache.
  DnsCache(Resolver& resolver, const Clock& clock,
           const DnsCacheOptions& options);
  // Waits for the lookups still running.
  ~DnsCache();

  // The cached answer for `host`, or a fresh lookup. Errors are UNAVAILABLE,
  // naming the host; they are cached for negative_ttl. DEADLINE_EXCEEDED when
  // no answer came before `deadline`.
  absl::StatusOr<Answer> Lookup(const std::string& host,
                                const Deadline& deadline);
  // Waits as long as the lookup takes.
  absl::StatusOr<Answer> Lookup(const std::string& host) {
    return Lookup(host, Deadline::Never(clock_));
  }

  // Forgets `host`: the next Lookup asks the resolver.
  void Invalidate(const std::string& host);

  size_t size() const;
  // Callers waiting right now for the lookup of `host` in flight.
  int Waiting(const std::string& host) const;

 private:
  // A lookup's outcome as plain values: every caller builds its own Status
  // from it, so no reference-counted Status is shared between threads.
  struct Result {
    std::vector<std::string> addresses;  // empty on failure
    absl::StatusCode code = absl::StatusCode::kOk;
    std::string error;

    static Result From(absl::StatusOr<std::vector<std::string>> resolved);
    absl::Status status() const { return absl::Status(code, error); }
  };
  struct Entry {
    Result result;
    MonoTime expires;
  };
  // One lookup in progress, shared by every caller that wants its name.
  struct Inflight {
    bool done = false;  // guarded by mu_
    int waiting = 0;    // guarded by mu_: callers waiting for it
    Result result;      // guarded by mu_, set with done
  };
  void EvictIfFull(MonoTime now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs on a lookup's own thread.
  void Resolve(std::string host, std::shared_ptr<Inflight> inflight);

  Resolver& resolver_;
  const Clock& clock_;
  const DnsCacheOptions options_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Inflight>> inflight_
      ABSL_GUARDED_BY(mu_);
  size_t threads_ ABSL_GUARDED_BY(mu_) = 0;  // lookup threads still running
  std::condition_variable done_;             // a lookup finished
};

// True when `host` is a numeric IPv4 or IPv6 address (no brackets).
bool IsIpLiteral(const std::string& host);

}  // namespace egress
