#include "service/pool/attempt_loop.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "service/base/error_details.h"

namespace egress {
namespace {

using std::chrono::nanoseconds;

// The sink between the session and the call's: numbers the attempts, and
// drops the answers that are retried.
class AnswerGate final : public ResponseSink {
 public:
  AnswerGate(ResponseSink& sink, const CallPlan& call)
      : sink_(sink), call_(call) {}

  void NextAttempt() {
    ++attempts_;
    retry_wait_ = nanoseconds::zero();
    dropped_bytes_ = 0;
  }
  int attempts() const { return attempts_; }
  // The wait the last answer asked for, when it is to be retried; zero
  // otherwise.
  nanoseconds retry_wait() const { return retry_wait_; }
  void Waited(nanoseconds wait) { waited_ += wait; }
  nanoseconds waited() const { return waited_; }

  bool OnHead(UpstreamHead head, std::optional<uint64_t> length) override {
    ++answers_;
    if (call_.decide_retry) {
      const RetryDecision retry = call_.decide_retry(head, answers_);
      if (retry.outcome == RetryOutcome::kRetry) {
        retry_wait_ = std::max(retry.wait, nanoseconds(1));
        return !length.has_value() || *length <= defaults::kMaxDroppedBodyBytes;
      }
    }
    head.attempts = attempts_;
    head.retry_wait = waited_;
    return sink_.OnHead(std::move(head), length);
  }
  bool OnBody(const char* data, size_t size) override {
    if (retry_wait_ == nanoseconds::zero()) return sink_.OnBody(data, size);
    dropped_bytes_ += size;
    return dropped_bytes_ <= defaults::kMaxDroppedBodyBytes;
  }
  absl::Status AbortStatus() const override {
    if (retry_wait_ > nanoseconds::zero()) {
      return absl::AbortedError("answer dropped to retry after Retry-After");
    }
    return sink_.AbortStatus();
  }

 private:
  ResponseSink& sink_;
  const CallPlan& call_;
  int attempts_ = 0;
  int answers_ = 0;
  nanoseconds waited_{0};
  nanoseconds retry_wait_{0};
  size_t dropped_bytes_ = 0;
};

// A request that may be delivered twice without harm.
bool MayResend(const UpstreamRequest& request) {
  return IsIdempotentMethod(request.method) ||
         std::any_of(
             request.headers.begin(), request.headers.end(), [](const auto& h) {
               return absl::EqualsIgnoreCase(h.first, "Idempotency-Key");
             });
}

// One exchange, and its resend on a fresh connection when the reused one
// had gone stale.
ExchangeOutcome ExchangeOnce(HttpSession& session, const CallPlan& call,
                             AnswerGate& gate) {
  gate.NextAttempt();
  ExchangeOutcome first = session.Exchange(call.request, call.deadline, gate,
                                           &call.canceller, call.idle_timeout);
  if (!first.stale()) return first;
  if (!MayResend(call.request)) {
    first.status = WithDetailsOf(
        first.status, absl::StatusCode::kUnavailable,
        absl::StrFormat("%s: reused connection failed (%s); the request may "
                        "not have been delivered and %s is not idempotent, "
                        "so it was not retried",
                        session.Describe(), first.status.message(),
                        call.request.method));
    return first;
  }
  if (call.deadline.Expired() || call.canceller.cancelled()) return first;
  session.observer().OnStaleRetry();
  gate.NextAttempt();
  ExchangeOutcome second = session.Exchange(call.request, call.deadline, gate,
                                            &call.canceller, call.idle_timeout);
  second.upstream_time += first.upstream_time;
  return second;
}

}  // namespace

absl::StatusOr<ExchangeSummary> PerformCall(const CallPlan& call,
                                            ResponseSink& sink,
                                            WithSession with_session) {
  AnswerGate gate(sink, call);
  ExchangeSummary summary;
  for (;;) {
    ExchangeOutcome outcome = with_session([&](HttpSession& session) {
      return ExchangeOnce(session, call, gate);
    });
    summary.upstream_time += outcome.upstream_time;
    const nanoseconds wait = gate.retry_wait();
    if (wait == nanoseconds::zero()) {
      if (!outcome.status.ok()) return outcome.status;
      break;
    }
    // The answer asked for a retry: whatever became of its body, wait.
    if (!call.canceller.WaitFor(wait)) {
      return absl::CancelledError(
          "the call was cancelled while waiting to retry (Retry-After)");
    }
    gate.Waited(wait);
  }
  summary.attempts = gate.attempts();
  summary.retry_wait = gate.waited();
  return summary;
}

}  // namespace egress
