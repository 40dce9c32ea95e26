// Admission: what happens to a call on gRPC's thread before any worker sees
// it: the caller is authenticated, the request validated and checked against
// the host and port policy, and the call's Deadline decided once
// (Deadline::ForCall). A call refused here never touches an upstream. Queueing
// is the caller's next step (EgressService::Submit); CheckTaken is the last
// look before a worker starts the exchange.
//
// Thread safety: thread-safe (const after construction).
#pragma once

#include <chrono>
#include <memory>

#include "absl/status/statusor.h"
#include "proto/egress/v1/egress.grpc.pb.h"
#include "service/admission/caller_auth.h"
#include "service/admission/origin_table.h"
#include "service/admission/outlier_ejection.h"
#include "service/admission/request_validation.h"
#include "service/base/call_context.h"
#include "service/base/clock.h"
#include "service/base/deadline.h"
#include "service/base/defaults.h"
#include "service/base/http_types.h"
#include "service/policy/destination_policy.h"
#include "service/pool/memory_budget.h"

namespace egress {

struct AdmissionOptions {
  ValidationLimits limits;
  // Used when a Do call gives neither a timeout nor a deadline.
  std::chrono::nanoseconds default_timeout = defaults::kDefaultTimeout;
  // No call's deadline is further away; a DoStream without a timeout or a
  // deadline gets it.
  std::chrono::nanoseconds max_timeout = defaults::kMaxTimeout;
  // Who may call; nullptr lets everyone in as "anonymous".
  const CallerAuth* auth = nullptr;
  // Calls in flight per caller identity without a max_inflight= of its own
  // (0: no limit).
  size_t max_inflight_per_caller = defaults::kMaxInflightPerCaller;
  // The bytes calls may hold (--max_buffered_bytes); nullptr: no budget.
  MemoryBudget* budget = nullptr;
  // Which hosts and ports may be reached (addresses are checked by the
  // sessions); nullptr allows every host and port.
  const DestinationPolicy* policy = nullptr;
  // Each origin's entry (origin_table.h): its injected headers and its
  // sessions; nullptr: the service-wide settings for every origin.
  const OriginRoutes* origins = nullptr;
  // Refuses calls to ejected origins; nullptr: no ejection.
  OutlierEjection* ejection = nullptr;
  // Send the caller's x-request-id (or the generated one), traceparent and
  // tracestate upstream as headers (--forward_trace_context).
  bool forward_trace_context = defaults::kForwardTraceContext;
};

// An admitted call: its upstream request and its deadline.
struct Admitted {
  std::shared_ptr<const UpstreamRequest> request;
  Deadline deadline;
  // The caller's limit of calls in flight (0: none): its identity's
  // max_inflight=, else --max_inflight_per_caller.
  size_t caller_limit = 0;
  // The bytes the call holds of --max_buffered_bytes: its request body (and a
  // stream's buffers) from admission; Do's response body as it grows. The
  // call keeps it until it is done (after its answer is sent).
  std::unique_ptr<BudgetLease> budget;
  // The origin's entry as it was when the call was admitted (a reload does
  // not change it); nullptr without AdmissionOptions::origins.
  std::shared_ptr<const OriginRoute> route;
};

class Admission {
 public:
  enum class Rpc { kDo, kDoStream };

  // REQUIRES: `clock`, and the auth and policy in `options`, outlive this.
  Admission(const AdmissionOptions& options, const Clock& clock);

  // Admits `request` or says why not (UNAUTHENTICATED, INVALID_ARGUMENT,
  // RESOURCE_EXHAUSTED for a body over a limit or over what is left of
  // --max_buffered_bytes, PERMISSION_DENIED, DEADLINE_EXCEEDED, UNAVAILABLE
  // for an ejected origin, INVALID_ARGUMENT for a header its entry injects,
  // FAILED_PRECONDITION when an injected header's file cannot be read), filling
  // `record` with what it learns (method, url, identity, origin). `owned` is
  // `request` itself when the service owns it (Do's, see EgressService), so
  // that an admitted body is moved instead of copied; nullptr otherwise.
  absl::StatusOr<Admitted> Admit(const egress::v1::DoRequest& request,
                                 egress::v1::DoRequest* owned,
                                 const grpc::ServerContextBase& context,
                                 Rpc rpc, CallContext& record) const;

  // On the worker that took a call, after `queued` in the queue: may it still
  // go ahead? DEADLINE_EXCEEDED or CANCELLED when not.
  absl::Status CheckTaken(const grpc::ServerContextBase& context,
                          const Deadline& deadline,
                          std::chrono::nanoseconds queued) const;

  // Time left before the call's gRPC deadline; max() when it has none.
  std::chrono::nanoseconds GrpcRemaining(
      const grpc::ServerContextBase& context) const;

 private:
  // Adds the headers `route` injects for `identity` to `request`.
  static absl::Status Inject(const OriginRoute& route,
                             absl::string_view identity,
                             UpstreamRequest& request);

  const AdmissionOptions options_;
  const Clock& clock_;
};

}  // namespace egress
