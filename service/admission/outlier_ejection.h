// OutlierEjection: origins that keep failing are ejected for a while, and
// calls to them fail at once instead of each waiting for its own connect
// timeout while holding a worker and an origin slot.
//
// Per origin it counts consecutive connection failures (refused, timed out,
// reset before any answer) and consecutive 5xx answers; any other answer
// resets both. When a count reaches its entry's EjectionRule, the origin is
// ejected for base_time, doubled for each ejection in a row (up to
// max_time). While ejected, Admit refuses calls with UNAVAILABLE, reason
// ORIGIN_EJECTED and a RetryInfo of the time left. When the time is up, one
// call is let through as a probe (half-open): its success ends the ejection
// and the streak; its failure ejects the origin again, for longer. A probe
// that ends without a verdict (cancelled, deadline) lets the next call probe.
//
// Only origins with a failure on record are tracked: while there are none,
// Admit and Record take no lock.
//
// Usage:
//   absl::Status admitted = ejection.Admit(key, route.entry, rule);
//   ... the call ...
//   ejection.Record(key, rule, CallVerdict::kConnectionFailure);
//
// Thread safety: thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "service/admission/origin_table.h"
#include "service/base/clock.h"

namespace egress {

// What a call's end says about its origin.
enum class CallVerdict {
  kAnswered,           // an answer other than 5xx: the origin is fine
  kConnectionFailure,  // refused, timed out or reset before any answer
  kServerError,        // a 5xx answer
  kNoVerdict,          // cancelled, the deadline, a bad request...
};

// The verdict of a call that ended with `status` (OK: `http_status` answered).
CallVerdict VerdictOf(const absl::Status& status, int http_status);

class OutlierEjection {
 public:
  // Told of each ejection (`origin`, its length; `again` when a probe
  // failed) and of each end of one. Called under the ejection's lock: it
  // must not call back.
  struct Listener {
    virtual ~Listener() = default;
    virtual void OnEjected(const std::string& origin,
                           std::chrono::nanoseconds length, bool again) = 0;
    virtual void OnRestored(const std::string& origin) = 0;
  };

  // REQUIRES: `clock` (and `listener`, when given) outlive this.
  explicit OutlierEjection(const Clock& clock, Listener* listener = nullptr)
      : clock_(clock), listener_(listener) {}

  // OK, or UNAVAILABLE (ORIGIN_EJECTED, RetryInfo) while `origin` is
  // ejected. `entry` names the origin entry, for the message.
  absl::Status Admit(const std::string& origin, const std::string& entry,
                     const EjectionRule& rule);
  void Record(const std::string& origin, const EjectionRule& rule,
              CallVerdict verdict);

  // Origins ejected now.
  size_t ejected() const;

 private:
  struct State {
    int failures = 0;       // consecutive connection failures
    int server_errors = 0;  // consecutive 5xx
    int ejections = 0;      // in a row, for the back-off
    MonoTime ejected_until{};
    bool ejected = false;
    bool probing = false;
    MonoTime probe_started{};
  };
  void Eject(const std::string& origin, const EjectionRule& rule, State& state,
             MonoTime now);

  const Clock& clock_;
  Listener* const listener_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, State> states_;  // guarded by mu_
  // states_.size(), read without the lock.
  std::atomic<size_t> tracked_{0};
};

}  // namespace egress
