#include "service/base/deadline.h"

#include "absl/status/status.h"

namespace egress {

using std::chrono::nanoseconds;

nanoseconds Deadline::CallTimeout(const CallTimeouts& t) {
  const bool has_grpc_deadline = t.grpc_remaining != nanoseconds::max();
  nanoseconds timeout = t.requested > nanoseconds::zero() ? t.requested
                        : has_grpc_deadline               ? t.grpc_remaining
                                                          : t.fallback;
  return std::min({timeout, t.grpc_remaining, t.max});
}

absl::StatusOr<Deadline> Deadline::ForCall(const Clock& clock, MonoTime start,
                                           const CallTimeouts& timeouts) {
  const nanoseconds timeout = CallTimeout(timeouts);
  if (timeout <= nanoseconds::zero()) {
    return absl::DeadlineExceededError(
        "deadline expired before the call reached the service");
  }
  return Deadline(clock, Add(start, timeout));
}

}  // namespace egress
