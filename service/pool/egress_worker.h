// EgressWorker: the state one worker thread owns for its whole life (its
// SessionCache, the first tier of the session pool) and the upstream exchange
// it performs for each call.
//
// WorkerPool<EgressWorker> builds one per thread, on that thread, and hands it
// to every task the thread runs: the worker's identity and its sessions are
// reached with no lookup and no lock.
//
// Thread safety: confined to its worker thread.
#pragma once

#include <chrono>
#include <mutex>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "service/base/clock.h"
#include "service/base/deadline.h"
#include "service/base/http_types.h"
#include "service/pool/attempt_loop.h"
#include "service/pool/session_cache.h"
#include "service/transport/http_session.h"
#include "service/transport/session_observer.h"

namespace egress {

class EgressWorker {
 public:
  // REQUIRES: `shared`, `clock` and `observer` outlive the worker.
  EgressWorker(size_t index, const SessionCacheOptions& options,
               SessionPool& shared, const Clock& clock,
               SessionObserver& observer);

  // Performs `call` (attempt_loop.h: stale-connection resends and
  // Retry-After retries included) over this worker's session for the
  // request's origin, leased for each exchange; the response goes to `sink`
  // as it arrives. `call.canceller` (it must outlive the call) may abort it.
  absl::StatusOr<ExchangeSummary> Perform(const CallPlan& call,
                                          ResponseSink& sink);

  // Cancels the call this worker is serving, if any (the drain time is
  // over). Thread-safe.
  void AbortCurrent();

  // Called by WorkerPool when the worker has been idle for a maintenance
  // interval, and when it retires: its session goes to the shared tier, where
  // other workers find it and the janitor closes it on time.
  void Maintain() { sessions_.ParkKept(); }
  void Retire() { sessions_.ParkKept(); }
  // Called by WorkerPool, under its lock, when enough workers went on the
  // idle stack above this one (WorkerPoolOptions::demote_depth) while it
  // waits, not touching its state: the returned job, run by the worker that
  // went on top, parks this worker's session in the shared tier, where the
  // next call for its origin finds it.
  absl::AnyInvocable<void()> Demote() { return sessions_.DemoteKept(); }

  size_t index() const { return index_; }
  const SessionCache& sessions() const { return sessions_; }

 private:
  class Serving;
  // Logs a session that is about to be dropped for errors.
  void NoteBroken(const HttpSession& session, const absl::Status& last);

  const size_t index_;
  SessionCache sessions_;
  std::mutex current_mu_;
  // The canceller of the call being served, for AbortCurrent.
  ExchangeCanceller* current_ = nullptr;  // guarded by current_mu_
};

}  // namespace egress
