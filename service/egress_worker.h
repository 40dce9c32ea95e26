// EgressWorker: the state one worker thread owns for its whole life (its
// SessionCache) and the upstream exchange it performs for each call.
//
// WorkerPool<EgressWorker> builds one per thread, on that thread, and hands it
// to every task the thread runs: the worker's identity and its sessions are
// reached with no lookup and no lock.
//
// Thread safety: confined to its worker thread.
#pragma once

#include "absl/status/statusor.h"
#include "service/clock.h"
#include "service/http_types.h"
#include "service/session_cache.h"
#include "service/session_observer.h"

namespace egress {

class EgressWorker {
 public:
  // REQUIRES: `clock` and `observer` outlive the worker.
  EgressWorker(size_t index, const SessionCacheOptions& options,
               const Clock& clock, SessionObserver& observer);

  // Sends `request` over this worker's session for its origin and returns the
  // upstream's whole response; `deadline` bounds the exchange.
  absl::StatusOr<UpstreamResponse> Perform(const UpstreamRequest& request,
                                           MonoTime deadline);

  // Called by WorkerPool while the worker is idle: closes idle sessions.
  void Maintain() { sessions_.DropIdle(); }

  size_t index() const { return index_; }
  const SessionCache& sessions() const { return sessions_; }

 private:
  const size_t index_;
  SessionCache sessions_;
};

}  // namespace egress
