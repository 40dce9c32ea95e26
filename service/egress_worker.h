// EgressWorker: the state one worker thread owns for its whole life (its
// SessionCache) and the upstream exchange it performs for each call.
//
// WorkerPool<EgressWorker> builds one per thread, on that thread, and hands it
// to every task the thread runs: the worker's identity and its sessions are
// reached with no lookup and no lock.
//
// Thread safety: confined to its worker thread.
#pragma once

#include <chrono>
#include <mutex>

#include "absl/status/statusor.h"
#include "service/clock.h"
#include "service/http_session.h"
#include "service/http_types.h"
#include "service/session_cache.h"
#include "service/session_observer.h"

namespace egress {

// Links a call's cancellation to the upstream exchange that serves it: the
// worker attaches the session for the exchange's duration, and Cancel, from
// any thread, aborts that exchange at once (or the next one attached).
// Thread-safe.
class ExchangeCanceller {
 public:
  // Called by the worker with the session before the exchange and with
  // nullptr after it.
  void Attach(HttpSession* session);
  // The caller went away: abort the exchange, now or when it starts.
  void Cancel();

 private:
  std::mutex mu_;
  HttpSession* session_ = nullptr;  // guarded by mu_
  bool cancelled_ = false;          // guarded by mu_
};

// A ResponseSink whose exchange may be abandoned from another thread.
class AbortableSink : public ResponseSink {
 public:
  virtual ExchangeCanceller& canceller() = 0;
};

class EgressWorker {
 public:
  // REQUIRES: `clock` and `observer` outlive the worker.
  EgressWorker(size_t index, const SessionCacheOptions& options,
               const Clock& clock, SessionObserver& observer);

  // Sends `request` over this worker's session for its origin and returns the
  // upstream's whole response; `deadline` bounds the exchange, and
  // `canceller` (which must outlive the call) may abort it.
  absl::StatusOr<UpstreamResponse> Perform(const UpstreamRequest& request,
                                           MonoTime deadline,
                                           ExchangeCanceller& canceller);

  // Like Perform, but the response goes to `sink` as it arrives.
  absl::StatusOr<UpstreamResponse> Stream(const UpstreamRequest& request,
                                          MonoTime deadline,
                                          std::chrono::nanoseconds idle_timeout,
                                          AbortableSink& sink);

  // Abandons the exchange this worker is in, if any (the drain time is over).
  // Thread-safe.
  void AbortCurrent();

  // Called by WorkerPool while the worker is idle: closes idle sessions.
  void Maintain() { sessions_.DropIdle(); }

  size_t index() const { return index_; }
  const SessionCache& sessions() const { return sessions_; }

 private:
  // Publishes the session in use, for AbortCurrent.
  void SetCurrent(HttpSession* session);
  // Logs a session that is about to be dropped for errors.
  void NoteBroken(const HttpSession& session, const absl::Status& last);

  const size_t index_;
  SessionCache sessions_;
  std::mutex current_mu_;
  HttpSession* current_ = nullptr;  // guarded by current_mu_
};

}  // namespace egress
