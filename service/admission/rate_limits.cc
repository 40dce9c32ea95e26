#include "service/admission/rate_limits.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace egress {

absl::StatusOr<RateLimit> ParseRateLimit(absl::string_view rate,
                                         uint32_t burst) {
  const size_t slash = rate.find('/');
  double count = 0;
  if (slash == absl::string_view::npos ||
      !absl::SimpleAtod(rate.substr(0, slash), &count) ||
      !std::isfinite(count) || count <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", rate,
                     "\" is not a rate: a positive number of calls, \"/\" and "
                     "s, min or h (\"100/s\", \"6000/min\")"));
  }
  const absl::string_view unit = rate.substr(slash + 1);
  double seconds;
  if (unit == "s" || unit == "sec" || unit == "second") {
    seconds = 1;
  } else if (unit == "min" || unit == "minute") {
    seconds = 60;
  } else if (unit == "h" || unit == "hour") {
    seconds = 3600;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", rate, "\": the unit after \"/\" must be s, min or h"));
  }
  RateLimit limit;
  limit.per_second = count / seconds;
  limit.burst = burst > 0
                    ? burst
                    : static_cast<uint32_t>(std::max(
                          1.0, std::ceil(std::min(limit.per_second, 1e9))));
  return limit;
}

RateLimits::RateLimits(const Clock& clock, size_t max_keys)
    : clock_(clock), max_keys_(std::max<size_t>(max_keys, 1)) {}

RateLimits::Nanos RateLimits::Interval(const RateLimit& limit) {
  const double ns = 1e9 / limit.per_second;
  return Nanos(static_cast<int64_t>(std::min(ns, 1e18)));
}

RateDecision RateLimits::Reserve(const std::string& key, const RateLimit& limit,
                                 MonoTime latest) {
  const MonoTime now = clock_.Now();
  const Nanos interval = Interval(limit);
  const Nanos window = interval * static_cast<int64_t>(limit.burst);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= max_keys_) {
      entries_.erase(recency_.back());
      recency_.pop_back();
    }
    recency_.push_front(key);
    it = entries_.emplace(key, Entry{now, recency_.begin()}).first;
  } else {
    recency_.splice(recency_.begin(), recency_, it->second.recency);
  }
  Entry& entry = it->second;
  const MonoTime tat = std::max(entry.tat, now) + interval;
  RateDecision decision;
  decision.at = std::max(now, tat - window);
  // A call that may go now goes, whatever its `latest` (a caller's "now" is
  // a moment earlier than this one).
  if (decision.at > now && decision.at > latest) return decision;
  entry.tat = tat;
  decision.reserved = true;
  decision.tat = tat;
  return decision;
}

void RateLimits::Unreserve(const std::string& key, const RateLimit& limit,
                           const RateDecision& reserved) {
  if (!reserved.reserved) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.tat != reserved.tat) return;
  it->second.tat -= Interval(limit);
}

size_t RateLimits::keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace egress
