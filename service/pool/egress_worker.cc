#include "service/pool/egress_worker.h"

#include "absl/strings/str_cat.h"
#include "service/base/log.h"

namespace egress {

EgressWorker::EgressWorker(size_t index, const SessionCacheOptions& options,
                           SessionPool& shared, const Clock& clock,
                           SessionObserver& observer)
    : index_(index), sessions_(options, shared, clock, observer) {}

// Publishes the call being served, for AbortCurrent, for its lifetime.
class EgressWorker::Serving {
 public:
  Serving(EgressWorker& worker, ExchangeCanceller& canceller)
      : worker_(worker) {
    std::lock_guard<std::mutex> lock(worker_.current_mu_);
    worker_.current_ = &canceller;
  }
  ~Serving() {
    std::lock_guard<std::mutex> lock(worker_.current_mu_);
    worker_.current_ = nullptr;
  }

 private:
  EgressWorker& worker_;
};

absl::StatusOr<ExchangeSummary> EgressWorker::Perform(const CallPlan& call,
                                                      ResponseSink& sink) {
  Serving serving(*this, call.canceller);
  return PerformCall(call, sink, [&](SessionUse use) {
    SessionLease session =
        sessions_.Lease(call.request.origin, call.session_options);
    ExchangeOutcome outcome = use(*session);
    if (session->state() == HttpSession::State::kBroken) {
      NoteBroken(*session, outcome.status);
    }
    return outcome;  // ~SessionLease gives the session back
  });
}

void EgressWorker::AbortCurrent() {
  std::lock_guard<std::mutex> lock(current_mu_);
  if (current_ != nullptr) current_->Cancel();
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
