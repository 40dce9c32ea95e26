// SessionObserver: what the session layer reports about connections and
// sessions. Metrics implements it for the service; tests implement it with
// plain counters, so the session units build without Prometheus or gRPC.
//
// Thread safety: a worker calls its observer from its own thread only, but one
// observer may be shared by every worker, so implementations must be
// thread-safe.
#pragma once

namespace egress {

// Why a session was dropped. Each value is a `reason` label of
// egress_session_recreations_total.
enum class DropReason {
  kErrors,       // max_session_errors consecutive failures
  kIdle,         // unused longer than keepalive_timeout
  kMaxRequests,  // served max_requests_per_session requests
  kEvicted,      // the worker's cache was over max_sessions_per_worker (LRU)
  kShutdown,     // the worker is stopping
  kRetired,      // the worker retired, idle above --min_workers
};
inline constexpr int kDropReasonCount = 6;

// The label value: "errors", "idle", "max_requests", "evicted", "shutdown",
// "retired".
const char* DropReasonName(DropReason reason);

class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  virtual void OnSessionCreated() {}
  virtual void OnSessionDropped(DropReason reason) {}
  // A new TCP connection to an upstream was opened; `tls` when it began with a
  // TLS handshake.
  virtual void OnConnectionOpened(bool tls) {}
  // A request went out over a connection that had served an earlier one.
  virtual void OnConnectionReused() {}
  // A request that failed on a reused connection was sent again on a fresh one.
  virtual void OnStaleRetry() {}
};

}  // namespace egress
