#include "service/egress_worker.h"

#include "absl/strings/str_cat.h"
#include "service/log.h"

namespace egress {

EgressWorker::EgressWorker(size_t index, const SessionCacheOptions& options,
                           const Clock& clock, SessionObserver& observer)
    : index_(index), sessions_(options, clock, observer) {}

absl::StatusOr<UpstreamResponse> EgressWorker::Perform(
    const UpstreamRequest& request, MonoTime deadline) {
  HttpSession& session = sessions_.Acquire(request.origin);
  absl::StatusOr<UpstreamResponse> response = session.Send(request, deadline);
  if (session.Broken()) {
    // A degraded mode logs and counts (egress_session_recreations_total).
    LogWarning(absl::StrCat(
        "worker ", index_, ": session to ", session.origin().Key(),
        " dropped after ", session.consecutive_errors(),
        " consecutive errors; last: ", response.status().message()));
  }
  sessions_.Release(session);
  return response;
}

}  // namespace egress
