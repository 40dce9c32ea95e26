// SessionObserver: what the session layer reports about connections and
// sessions. Metrics implements it for the service; tests implement it with
// plain counters, so the session units build without Prometheus or gRPC.
//
// Thread safety: a worker calls its observer from its own thread only, but one
// observer may be shared by every worker, so implementations must be
// thread-safe.
#pragma once

#include <string>

namespace egress {

// Why a session was dropped. Each value is a `reason` label of
// egress_session_recreations_total.
enum class DropReason {
  kErrors,          // max_session_errors consecutive failures
  kIdle,            // unused longer than keepalive_timeout
  kMaxRequests,     // served max_requests_per_session requests
  kEvicted,         // over --max_idle_per_origin or --max_idle_connections
                    // (least recently used first)
  kShutdown,        // the service is stopping
  kUpstreamClosed,  // the upstream closed the connection while it was idle
};
inline constexpr int kDropReasonCount = 6;

// The label value: "errors", "idle", "max_requests", "evicted", "shutdown",
// "upstream_closed".
const char* DropReasonName(DropReason reason);

// Where a worker found the session it lends for a call (the `source` label of
// egress_pool_leases_total).
enum class LeaseSource {
  kLocal,   // the worker's own last session: no lock
  kShared,  // an idle session another worker parked in the shared tier
  kNew,     // none idle: a new session, which connects
};
inline constexpr int kLeaseSourceCount = 3;

// "local", "shared", "new".
const char* LeaseSourceName(LeaseSource source);

class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  virtual void OnSessionCreated() {}
  virtual void OnSessionDropped(DropReason reason) {}
  // Sessions of `origin` (Origin::Key()) became idle or busy: the deltas to
  // add (a lease is idle -1, busy +1; a new session busy +1; a drop -1 of
  // whichever it was).
  virtual void OnPoolChange(const std::string& origin, int idle_delta,
                            int busy_delta) {}
  // A call was lent a session from `source`.
  virtual void OnLease(LeaseSource source) {}
  // A new TCP connection to `origin` was opened; `tls` when it began with a
  // TLS handshake, `resumed` when that handshake resumed an earlier session.
  virtual void OnConnectionOpened(const std::string& origin, bool tls,
                                  bool resumed) {}
  // A request to `origin` went out over a connection that had served an
  // earlier one.
  virtual void OnConnectionReused(const std::string& origin) {}
  // A request that failed on a reused connection was sent again on a fresh one.
  virtual void OnStaleRetry() {}
};

}  // namespace egress
