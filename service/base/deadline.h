// Deadline: the moment one call's upstream work must be over, and the budgets
// that follow from it.
//
// A call's timeout is decided once, when the call is admitted
// (Deadline::ForCall: the caller's timeout, its gRPC deadline and the
// service's limits), and the resulting Deadline travels with the call: the
// queue, the DNS lookup, the connect, every read and write. Each asks it for
// what is left (Remaining) or for a budget capped by its own limit (Budget),
// so the arithmetic is written here and nowhere else. Time is read from the
// Clock the deadline carries.
//
// Usage:
//   absl::StatusOr<Deadline> d = Deadline::ForCall(clock, start, timeouts);
//   Deadline::Budget connect = d->Cap(options.connect_timeout);
//   if (d->Expired()) ...
//
// Thread safety: a plain value; its Clock is thread-safe.
#pragma once

#include <algorithm>
#include <chrono>

#include "absl/status/statusor.h"
#include "service/base/clock.h"

namespace egress {

// What decides a call's timeout. Zero or max() mean "not given".
struct CallTimeouts {
  // The request's own timeout field; zero when unset.
  std::chrono::nanoseconds requested{0};
  // Time left before the call's gRPC deadline; max() without one.
  std::chrono::nanoseconds grpc_remaining = std::chrono::nanoseconds::max();
  // Used when the caller gave neither (--default_timeout for Do,
  // --max_timeout for DoStream).
  std::chrono::nanoseconds fallback{0};
  // Never more than this (--max_timeout).
  std::chrono::nanoseconds max = std::chrono::nanoseconds::max();
};

class Deadline {
 public:
  // A time left for one operation, and whether the deadline (rather than the
  // operation's own limit) is what bounds it.
  struct Budget {
    std::chrono::nanoseconds time;
    bool cut_by_deadline;
  };

  // `at` on `clock`. REQUIRES: `clock` outlives the deadline and its copies.
  Deadline(const Clock& clock, MonoTime at) : clock_(&clock), at_(at) {}
  // `timeout` from now.
  static Deadline In(const Clock& clock, std::chrono::nanoseconds timeout) {
    return Deadline(clock, Add(clock.Now(), timeout));
  }
  // A deadline that never passes.
  static Deadline Never(const Clock& clock) {
    return Deadline(clock, MonoTime::max());
  }

  // The timeout of a call that arrived at `start`: the caller's timeout, else
  // its gRPC deadline, else the fallback; never more than the gRPC deadline or
  // the maximum. DEADLINE_EXCEEDED when nothing is left.
  static std::chrono::nanoseconds CallTimeout(const CallTimeouts& t);
  static absl::StatusOr<Deadline> ForCall(const Clock& clock, MonoTime start,
                                          const CallTimeouts& timeouts);

  MonoTime at() const { return at_; }
  const Clock& clock() const { return *clock_; }
  bool Expired() const { return clock_->Now() >= at_; }
  bool IsNever() const { return at_ == MonoTime::max(); }
  // Time left; zero once expired.
  std::chrono::nanoseconds Remaining() const {
    const MonoTime now = clock_->Now();
    if (now >= at_) return std::chrono::nanoseconds::zero();
    if (IsNever()) return std::chrono::nanoseconds::max();
    return at_ - now;
  }
  // The time left, capped at `limit`.
  Budget Cap(std::chrono::nanoseconds limit) const {
    const std::chrono::nanoseconds left = Remaining();
    return left < limit ? Budget{left, true} : Budget{limit, false};
  }
  // The time left in whole microseconds, at least one (httplib's timeouts).
  std::chrono::microseconds RemainingMicros() const {
    return std::max(
        std::chrono::duration_cast<std::chrono::microseconds>(Remaining()),
        std::chrono::microseconds(1));
  }

 private:
  // t + d, saturating at MonoTime::max().
  static MonoTime Add(MonoTime t, std::chrono::nanoseconds d) {
    if (d >= MonoTime::max() - t) return MonoTime::max();
    return t + d;
  }

  const Clock* clock_;
  MonoTime at_;
};

}  // namespace egress
