#include "service/admission/outlier_ejection.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "service/base/defaults.h"
#include "service/base/error_details.h"

namespace egress {

using std::chrono::nanoseconds;

CallVerdict VerdictOf(const absl::Status& status, int http_status) {
  if (status.ok()) {
    return http_status >= 500 ? CallVerdict::kServerError
                              : CallVerdict::kAnswered;
  }
  const std::optional<std::string> reason = ReasonOf(status);
  if (!reason.has_value()) return CallVerdict::kNoVerdict;
  for (const ErrorReason failure :
       {ErrorReason::kConnectRefused, ErrorReason::kConnectTimeout,
        ErrorReason::kUpstreamReset, ErrorReason::kProxyConnectFailed}) {
    if (*reason == ErrorReasonName(failure)) {
      return CallVerdict::kConnectionFailure;
    }
  }
  return CallVerdict::kNoVerdict;
}

absl::Status OutlierEjection::Admit(const std::string& origin,
                                    const std::string& entry,
                                    const EjectionRule& rule) {
  if (tracked_.load(std::memory_order_acquire) == 0) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = states_.find(origin);
  if (it == states_.end() || !it->second.ejected) return absl::OkStatus();
  State& state = it->second;
  const MonoTime now = clock_.Now();
  nanoseconds left = state.ejected_until - now;
  if (left <= nanoseconds::zero()) {
    // Half-open: one probe at a time (a stuck one stops counting).
    if (!state.probing ||
        now - state.probe_started >
            std::max<nanoseconds>(rule.base_time,
                                  defaults::kEjectionProbeTimeout)) {
      state.probing = true;
      state.probe_started = now;
      return absl::OkStatus();
    }
    left = nanoseconds::zero();
  }
  return WithRetryDelay(
      WithReason(
          absl::UnavailableError(absl::StrFormat(
              "origin %s is ejected after %s in a row (%s); calls "
              "fail at once for %.1fs more, then one probe call is "
              "let through",
              origin,
              state.failures >= state.server_errors ? "connection failures"
                                                    : "5xx answers",
              entry, Seconds(left))),
          ErrorReason::kOriginEjected, {{"origin", origin}, {"entry", entry}}),
      std::max(left, nanoseconds(std::chrono::milliseconds(100))));
}

void OutlierEjection::Eject(const std::string& origin, const EjectionRule& rule,
                            State& state, MonoTime now) {
  const int doublings = std::min(state.ejections, 20);
  const nanoseconds length = std::min<nanoseconds>(
      rule.base_time * (int64_t{1} << doublings), rule.max_time);
  ++state.ejections;
  const bool again = state.ejected;
  state.ejected = true;
  state.probing = false;
  state.ejected_until = now + length;
  if (listener_ != nullptr) listener_->OnEjected(origin, length, again);
}

void OutlierEjection::Record(const std::string& origin,
                             const EjectionRule& rule, CallVerdict verdict) {
  const bool failed = verdict == CallVerdict::kConnectionFailure ||
                      verdict == CallVerdict::kServerError;
  // The common case, nothing on record and nothing to record: no lock.
  if (!failed && tracked_.load(std::memory_order_acquire) == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = states_.find(origin);
  if (it == states_.end()) {
    // Past the bound, new origins are not tracked (a caller reaching many
    // failing hosts does not grow this without end).
    if (!failed || states_.size() >= defaults::kMaxEjectionOrigins) return;
    it = states_.emplace(origin, State{}).first;
    tracked_.store(states_.size(), std::memory_order_release);
  }
  State& state = it->second;
  const MonoTime now = clock_.Now();
  switch (verdict) {
    case CallVerdict::kNoVerdict:
      state.probing = false;  // the next call probes
      return;
    case CallVerdict::kAnswered: {
      const bool was_ejected = state.ejected;
      states_.erase(it);
      tracked_.store(states_.size(), std::memory_order_release);
      if (was_ejected && listener_ != nullptr) listener_->OnRestored(origin);
      return;
    }
    case CallVerdict::kConnectionFailure:
      ++state.failures;
      state.server_errors = 0;
      break;
    case CallVerdict::kServerError:
      ++state.server_errors;
      state.failures = 0;
      break;
  }
  if (state.ejected) {
    // A probe failed (or a call let in before the ejection ended): again,
    // for longer.
    if (state.probing || now >= state.ejected_until) {
      Eject(origin, rule, state, now);
    }
    return;
  }
  const bool by_failures = rule.consecutive_failures > 0 &&
                           state.failures >= rule.consecutive_failures;
  const bool by_5xx =
      rule.consecutive_5xx > 0 && state.server_errors >= rule.consecutive_5xx;
  if (by_failures || by_5xx) Eject(origin, rule, state, now);
  // An origin that cannot eject (both rules off) is not tracked.
  if (!state.ejected && rule.consecutive_failures == 0 &&
      rule.consecutive_5xx == 0) {
    states_.erase(it);
    tracked_.store(states_.size(), std::memory_order_release);
  }
}

size_t OutlierEjection::ejected() const {
  if (tracked_.load(std::memory_order_acquire) == 0) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  size_t count = 0;
  for (const auto& [origin, state] : states_) count += state.ejected ? 1 : 0;
  return count;
}

}  // namespace egress
