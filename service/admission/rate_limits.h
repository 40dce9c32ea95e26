// RateLimits: calls per second (or per minute) with a burst, for one key at a
// time (an origin entry's, a caller identity's), by the generic cell rate
// algorithm (GCRA): each key keeps one time, its "theoretical arrival time"
// (TAT), the time at which it would be back to a full burst.
//
// A limit of R calls per second with a burst of B lets B calls through at
// once and then one every 1/R s: a call at time t conforms when
//   max(TAT, t) + 1/R - t <= B / R,
// and taking it sets TAT = max(TAT, t) + 1/R. A call that does not conform
// may reserve the first time it would (TAT + 1/R - B / R): calls waiting for
// a key go in the order they asked, each at its own time, and a call whose
// time is later than it may wait is refused without reserving anything, with
// that time (for the caller's RetryInfo). A reservation not used (the call
// was cancelled while waiting) is given back when no later one was made, and
// otherwise lost: the key runs at most one call slower for it.
//
// Exact to the clock's resolution for one process; the state is one time per
// key, at most `max_keys` keys (the least recently used one is dropped when a
// new one comes, which gives it a full burst again).
//
// Usage:
//   RateLimits limits(clock);
//   RateLimit limit{/*per_second=*/100, /*burst=*/20};
//   RateDecision d = limits.Reserve("origin:https://api.example", limit,
//                                   /*latest=*/clock.Now() + max_wait);
//   if (!d.reserved) refuse, retry at d.at;
//   else if (d.at > now) wait until d.at; then go.
//
// Thread safety: thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/base/clock.h"

namespace egress {

struct RateLimit {
  double per_second = 0;  // the sustained rate; > 0
  uint32_t burst = 1;     // calls at once beyond it; >= 1

  bool operator==(const RateLimit& other) const {
    return per_second == other.per_second && burst == other.burst;
  }
};

// Parses "100/s", "6000/min" or "2/h" (a positive number of calls per second,
// minute or hour) and a burst (0: one second's worth of calls, at least 1).
// The error names what is wrong, for the field it came from.
absl::StatusOr<RateLimit> ParseRateLimit(absl::string_view rate,
                                         uint32_t burst);

struct RateDecision {
  bool reserved = false;  // a call was taken for the key (at `at`)
  // When the call may go (reserved), or the first time it could have
  // (refused).
  MonoTime at{};
  MonoTime tat{};  // the key's time after this reservation (for Unreserve)
  // Taken from a lease of the limit shared through Redis (SharedRateLimits),
  // rather than from this replica's own count.
  bool leased = false;
};

// What the service asks of a rate limit, held by this replica (RateLimits) or
// shared by the fleet through Redis (SharedRateLimits).
class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  // Takes one call for `key` under `limit` at the first time it conforms,
  // if that is now or no later than `latest`; otherwise takes nothing.
  virtual RateDecision Reserve(const std::string& key, const RateLimit& limit,
                               MonoTime latest) = 0;
  // Gives back a call Reserve took that will not go (as far as it can).
  virtual void Unreserve(const std::string& key, const RateLimit& limit,
                         const RateDecision& reserved) = 0;
};

class RateLimits final : public RateLimiter {
 public:
  static constexpr size_t kDefaultMaxKeys = 100000;

  explicit RateLimits(const Clock& clock, size_t max_keys = kDefaultMaxKeys);
  RateLimits(const RateLimits&) = delete;
  RateLimits& operator=(const RateLimits&) = delete;

  RateDecision Reserve(const std::string& key, const RateLimit& limit,
                       MonoTime latest) override;

  // Only while no later call was reserved for the key.
  void Unreserve(const std::string& key, const RateLimit& limit,
                 const RateDecision& reserved) override;

  size_t keys() const;

 private:
  struct Entry {
    MonoTime tat{};
    std::list<std::string>::iterator recency;
  };
  using Nanos = std::chrono::nanoseconds;
  static Nanos Interval(const RateLimit& limit);

  const Clock& clock_;
  const size_t max_keys_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;  // guarded by mu_
  std::list<std::string> recency_;  // most recently used first; guarded by mu_
};

}  // namespace egress
