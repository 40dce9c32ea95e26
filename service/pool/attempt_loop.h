// PerformCall: the one perform-decide-wait loop of a call, for Do and
// DoStream alike. It holds both of the service's retries:
//
// - A stale connection: an exchange that failed on a reused keep-alive
//   connection before any response arrived (the upstream may have closed it
//   while it sat idle) is sent once more, on the same session's fresh
//   connection, when that is safe: an idempotent method or an
//   Idempotency-Key header (RFC 9110, 9.2.2), with time left and the call
//   not cancelled. Counted in egress_stale_retries_total.
// - An answer that asks for one (429 or 503 with Retry-After), when the call
//   opted in: CallPlan::decide_retry says so from the head; the answer never
//   reaches the sink (its body is read and dropped, up to
//   defaults::kMaxDroppedBodyBytes, so that the connection is kept), the loop
//   waits as asked (cancelled at once with the call) and sends again.
//
// Each exchange gets its session from `with_session`, so that a session is
// held only while it is used, never across a Retry-After wait.
//
// Usage (EgressWorker::Perform):
//   CallPlan call{request, deadline, canceller};
//   absl::StatusOr<ExchangeSummary> done = PerformCall(call, sink,
//       [&](auto use) { SessionLease s = cache.Lease(origin); return use(*s);
//       });
//
// Thread safety: runs on the calling thread; `sink` is called on it.
#pragma once

#include <chrono>
#include <functional>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "service/base/deadline.h"
#include "service/base/http_types.h"
#include "service/pool/answer_retry.h"
#include "service/transport/http_session.h"

namespace egress {

struct CallPlan {
  const UpstreamRequest& request;
  const Deadline& deadline;
  ExchangeCanceller& canceller;
  // The sessions the call uses: its origin entry's (admission/origin_table.h);
  // nullptr: the service-wide ones.
  const SessionOptions* session_options = nullptr;
  // For DoStream: the longest silence from the upstream.
  std::chrono::nanoseconds idle_timeout = kNoIdleTimeout;
  // Whether an answer is retried, given its head and the answers so far
  // (this one included); empty: never.
  std::function<RetryDecision(const UpstreamHead& head, int answers)>
      decide_retry;
};

// One exchange on a session: what PerformCall asks of `with_session`.
using SessionUse = absl::FunctionRef<ExchangeOutcome(HttpSession&)>;
using WithSession = absl::FunctionRef<ExchangeOutcome(SessionUse)>;

// Performs `call` until there is an answer to give (it then went to `sink`)
// or an error. The status of a failed call is the last exchange's; a call
// cancelled during a Retry-After wait is CANCELLED.
absl::StatusOr<ExchangeSummary> PerformCall(const CallPlan& call,
                                            ResponseSink& sink,
                                            WithSession with_session);

}  // namespace egress
