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
#include "service/clock.h"
#include "service/deadline.h"
#include "service/http_session.h"
#include "service/http_types.h"
#include "service/session_cache.h"
#include "service/session_observer.h"

namespace egress {

class EgressWorker {
 public:
  // REQUIRES: `shared`, `clock` and `observer` outlive the worker.
  EgressWorker(size_t index, const SessionCacheOptions& options,
               SessionPool& shared, const Clock& clock,
               SessionObserver& observer);

  // Sends `request` over this worker's session for its origin and returns the
  // upstream's whole response; `deadline` bounds the exchange, and
  // `canceller` (the call's; it must outlive the call) may abort it.
  // `budget` (optional) holds the response body's bytes.
  absl::StatusOr<UpstreamResponse> Perform(const UpstreamRequest& request,
                                           const Deadline& deadline,
                                           ExchangeCanceller& canceller,
                                           BudgetLease* budget = nullptr);

  // Like Perform, but the response goes to `sink` as it arrives.
  absl::StatusOr<UpstreamResponse> Stream(const UpstreamRequest& request,
                                          const Deadline& deadline,
                                          std::chrono::nanoseconds idle_timeout,
                                          ResponseSink& sink,
                                          ExchangeCanceller& canceller);

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
  // Runs `exchange` on this worker's session for the request's origin, with
  // the call published for AbortCurrent.
  template <typename ExchangeFn>
  absl::StatusOr<UpstreamResponse> Serve(const UpstreamRequest& request,
                                         ExchangeCanceller& canceller,
                                         ExchangeFn exchange);
  // Logs a session that is about to be dropped for errors.
  void NoteBroken(const HttpSession& session, const absl::Status& last);

  const size_t index_;
  SessionCache sessions_;
  std::mutex current_mu_;
  // The canceller of the call being served, for AbortCurrent.
  ExchangeCanceller* current_ = nullptr;  // guarded by current_mu_
};

}  // namespace egress
