#include "service/egress_worker.h"

#include "absl/strings/str_cat.h"
#include "service/log.h"

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

template <typename ExchangeFn>
absl::StatusOr<UpstreamResponse> EgressWorker::Serve(
    const UpstreamRequest& request, ExchangeCanceller& canceller,
    ExchangeFn exchange) {
  Serving serving(*this, canceller);
  SessionLease session = sessions_.Lease(request.origin);
  absl::StatusOr<UpstreamResponse> response = exchange(*session);
  if (session->state() == HttpSession::State::kBroken) {
    NoteBroken(*session, response.status());
  }
  return response;  // ~SessionLease gives the session back
}

absl::StatusOr<UpstreamResponse> EgressWorker::Perform(
    const UpstreamRequest& request, const Deadline& deadline,
    ExchangeCanceller& canceller, BudgetLease* budget) {
  return Serve(request, canceller, [&](HttpSession& session) {
    return session.Send(request, deadline, &canceller, budget);
  });
}

absl::StatusOr<UpstreamResponse> EgressWorker::Stream(
    const UpstreamRequest& request, const Deadline& deadline,
    std::chrono::nanoseconds idle_timeout, ResponseSink& sink,
    ExchangeCanceller& canceller) {
  return Serve(request, canceller, [&](HttpSession& session) {
    return session.Stream(request, deadline, idle_timeout, sink, &canceller);
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
