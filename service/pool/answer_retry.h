// AnswerRetry: the opt-in retry of an upstream answer that asks for one (429
// Too Many Requests or 503 Service Unavailable with Retry-After), and the
// server-wide RetryBudget that keeps such retries from multiplying load.
//
// A call opts in with DoRequest.retry (UpstreamRequest::retry). DecideRetry
// says, from facts alone, whether an answer is retried and after how long:
// only idempotent requests (RFC 9110 methods, or an Idempotency-Key header),
// only while attempts are left, only when the wait fits in
// RetryPolicy.max_wait and the call's remaining time, and only when the budget
// has a token. EgressService performs the wait and the next attempt.
//
// Thread safety: DecideRetry and RetryAfter are pure; RetryBudget is
// thread-safe (one atomic).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "service/base/http_types.h"

namespace egress {

// The wait an answer's Retry-After asks for, from `now`: delta-seconds or an
// HTTP-date (a date in the past is no wait). nullopt when the header is
// absent or malformed.
std::optional<std::chrono::nanoseconds> RetryAfter(const HeaderList& headers,
                                                   absl::Time now);

// Retries are at most `ratio` of the calls, with `burst` retries in reserve:
// each call adds `ratio` of a token (up to `burst`), each retry takes one.
// Starts full. ratio 0 with burst 0 allows none.
class RetryBudget {
 public:
  RetryBudget(double ratio, int burst);
  void OnCall();
  // Takes a token; false when none is left.
  bool TryRetry();

 private:
  static constexpr int64_t kMilli = 1000;
  const int64_t deposit_;  // milli-tokens per call
  const int64_t cap_;      // milli-tokens
  std::atomic<int64_t> tokens_;
};

enum class RetryOutcome {
  kNotAsked,  // not opted in, not a 429/503 with Retry-After, or not idempotent
  kRetry,     // wait, then try again
  kAttempts,  // the call's max_attempts are used up
  kTooLong,   // the wait is over max_wait or the time left
  kNoBudget,  // the server's retry budget is spent
};
inline constexpr int kRetryOutcomeCount = 5;
// "retried", "attempts", "too_long", "no_budget" ("" for kNotAsked): the
// outcome label of egress_answer_retries_total.
const char* RetryOutcomeName(RetryOutcome outcome);

struct RetryDecision {
  RetryOutcome outcome = RetryOutcome::kNotAsked;
  std::chrono::nanoseconds wait{0};
};

// Whether `request`'s answer (`status`, `headers`) is retried, after
// `attempts` answers so far, with `remaining` of the call's time. Takes a
// token from `budget` (nullptr: unlimited) only when it decides kRetry.
RetryDecision DecideRetry(const UpstreamRequest& request, int status,
                          const HeaderList& headers, int attempts,
                          std::chrono::nanoseconds remaining, absl::Time now,
                          RetryBudget* budget);

}  // namespace egress
