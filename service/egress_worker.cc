#include "service/egress_worker.h"

#include "absl/strings/str_cat.h"
#include "service/log.h"

namespace egress {

EgressWorker::EgressWorker(size_t index, const SessionCacheOptions& options,
                           const Clock& clock, SessionObserver& observer)
    : index_(index), sessions_(options, clock, observer) {}

void ExchangeCanceller::Attach(HttpSession* session) {
  std::lock_guard<std::mutex> lock(mu_);
  session_ = session;
  if (session_ != nullptr && cancelled_) session_->Abort();
}

void ExchangeCanceller::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  // HttpSession::Abort never blocks: it only shuts the socket down.
  if (session_ != nullptr) session_->Abort();
}

absl::StatusOr<UpstreamResponse> EgressWorker::Perform(
    const UpstreamRequest& request, MonoTime deadline,
    ExchangeCanceller& canceller) {
  HttpSession& session = sessions_.Acquire(request.origin);
  canceller.Attach(&session);
  SetCurrent(&session);
  absl::StatusOr<UpstreamResponse> response = session.Send(request, deadline);
  SetCurrent(nullptr);
  canceller.Attach(nullptr);  // before Release may drop the session
  if (session.Broken()) NoteBroken(session, response.status());
  sessions_.Release(session);
  return response;
}

absl::StatusOr<UpstreamResponse> EgressWorker::Stream(
    const UpstreamRequest& request, MonoTime deadline,
    std::chrono::nanoseconds idle_timeout, AbortableSink& sink) {
  HttpSession& session = sessions_.Acquire(request.origin);
  sink.canceller().Attach(&session);
  SetCurrent(&session);
  absl::StatusOr<UpstreamResponse> response =
      session.Stream(request, deadline, idle_timeout, sink);
  SetCurrent(nullptr);
  sink.canceller().Attach(nullptr);  // before Release may drop the session
  if (session.Broken()) NoteBroken(session, response.status());
  sessions_.Release(session);
  return response;
}

void EgressWorker::SetCurrent(HttpSession* session) {
  std::lock_guard<std::mutex> lock(current_mu_);
  current_ = session;
}

void EgressWorker::AbortCurrent() {
  std::lock_guard<std::mutex> lock(current_mu_);
  if (current_ != nullptr) current_->Abort();
}

void EgressWorker::NoteBroken(const HttpSession& session,
                              const absl::Status& last) {
  // A degraded mode logs and counts (egress_session_recreations_total).
  LogWarning(absl::StrCat("worker ", index_, ": session to ",
                          session.origin().Key(), " dropped after ",
                          session.consecutive_errors(),
                          " consecutive errors; last: ", last.message()));
}

}  // namespace egress
