#include "service/pool/answer_retry.h"

#include <algorithm>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace egress {

std::optional<std::chrono::nanoseconds> RetryAfter(const HeaderList& headers,
                                                   absl::Time now) {
  auto it = std::find_if(headers.begin(), headers.end(), [](const auto& h) {
    return absl::EqualsIgnoreCase(h.first, "Retry-After");
  });
  if (it == headers.end()) return std::nullopt;
  const absl::string_view value = absl::StripAsciiWhitespace(it->second);
  uint32_t seconds = 0;
  if (!value.empty() && absl::ascii_isdigit(value[0])) {
    if (!absl::SimpleAtoi(value, &seconds)) return std::nullopt;
    return std::chrono::seconds(seconds);
  }
  // IMF-fixdate, the form RFC 9110 requires senders to use.
  absl::Time when;
  std::string error;
  if (!absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(value),
                       absl::UTCTimeZone(), &when, &error)) {
    return std::nullopt;
  }
  return absl::ToChronoNanoseconds(std::max(when - now, absl::ZeroDuration()));
}

RetryBudget::RetryBudget(double ratio, int burst)
    : deposit_(static_cast<int64_t>(ratio * kMilli)),
      cap_(static_cast<int64_t>(burst) * kMilli),
      tokens_(cap_) {}

void RetryBudget::OnCall() {
  if (deposit_ == 0) return;
  int64_t tokens = tokens_.load(std::memory_order_relaxed);
  while (tokens < cap_ && !tokens_.compare_exchange_weak(
                              tokens, std::min(cap_, tokens + deposit_),
                              std::memory_order_relaxed)) {
  }
}

bool RetryBudget::TryRetry() {
  int64_t tokens = tokens_.load(std::memory_order_relaxed);
  do {
    if (tokens < kMilli) return false;
  } while (!tokens_.compare_exchange_weak(tokens, tokens - kMilli,
                                          std::memory_order_relaxed));
  return true;
}

const char* RetryOutcomeName(RetryOutcome outcome) {
  switch (outcome) {
    case RetryOutcome::kNotAsked:
      return "";
    case RetryOutcome::kRetry:
      return "retried";
    case RetryOutcome::kAttempts:
      return "attempts";
    case RetryOutcome::kTooLong:
      return "too_long";
    case RetryOutcome::kNoBudget:
      return "no_budget";
  }
  return "";
}

RetryDecision DecideRetry(const UpstreamRequest& request, int status,
                          const HeaderList& headers, int attempts,
                          std::chrono::nanoseconds remaining, absl::Time now,
                          RetryBudget* budget) {
  RetryDecision decision;
  if (request.retry.max_attempts <= 1 || (status != 429 && status != 503)) {
    return decision;
  }
  const bool idempotent =
      IsIdempotentMethod(request.method) ||
      std::any_of(request.headers.begin(), request.headers.end(),
                  [](const auto& h) {
                    return absl::EqualsIgnoreCase(h.first, "Idempotency-Key");
                  });
  if (!idempotent) return decision;
  const std::optional<std::chrono::nanoseconds> wait = RetryAfter(headers, now);
  if (!wait) return decision;
  decision.wait = *wait;
  if (attempts >= request.retry.max_attempts) {
    decision.outcome = RetryOutcome::kAttempts;
  } else if ((request.retry.max_wait && *wait > *request.retry.max_wait) ||
             *wait >= remaining) {
    decision.outcome = RetryOutcome::kTooLong;
  } else if (budget != nullptr && !budget->TryRetry()) {
    decision.outcome = RetryOutcome::kNoBudget;
  } else {
    decision.outcome = RetryOutcome::kRetry;
  }
  return decision;
}

}  // namespace egress
