#include "service/admission/admission.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/base/error_details.h"

namespace egress {

using std::chrono::nanoseconds;

Admission::Admission(const AdmissionOptions& options, const Clock& clock)
    : options_(options), clock_(clock) {}

nanoseconds Admission::GrpcRemaining(
    const grpc::ServerContextBase& context) const {
  const auto left = context.deadline() - clock_.WallNow();
  // gRPC reports "no deadline" as a time centuries away.
  if (left > std::chrono::hours(24 * 365 * 100)) return nanoseconds::max();
  return std::chrono::duration_cast<nanoseconds>(left);
}

absl::StatusOr<Admitted> Admission::Admit(
    const egress::v1::DoRequest& request, egress::v1::DoRequest* owned,
    const grpc::ServerContextBase& context, Rpc rpc,
    CallContext& record) const {
  // Labels only: Metrics folds anything but the standard methods into "OTHER".
  record.method = request.method().empty() ? "GET" : request.method();
  record.url = request.url();
  Caller caller{"anonymous", nullptr};
  if (options_.auth != nullptr) {
    absl::StatusOr<Caller> authenticated = options_.auth->Authenticate(context);
    if (!authenticated.ok()) return authenticated.status();
    caller = *std::move(authenticated);
  }
  record.identity = caller.identity;
  absl::StatusOr<UpstreamRequest> upstream =
      owned != nullptr ? ValidateRequest(std::move(*owned), options_.limits)
                       : ValidateRequest(request, options_.limits);
  if (!upstream.ok()) return upstream.status();
  record.origin = upstream->origin.Key();
  // The request id and the trace context travel upstream too, unless the
  // caller set those headers in the request itself.
  if (options_.forward_trace_context) {
    const auto forward = [&upstream](const char* name,
                                     const std::string& value) {
      if (value.empty()) return;
      if (std::none_of(upstream->headers.begin(), upstream->headers.end(),
                       [name](const auto& h) {
                         return absl::EqualsIgnoreCase(h.first, name);
                       })) {
        upstream->headers.emplace_back(name, value);
      }
    };
    forward("X-Request-Id", record.request_id);
    forward("traceparent", record.traceparent);
    forward("tracestate", record.tracestate);
  }
  if (options_.policy != nullptr) {
    absl::Status allowed = options_.policy->CheckDestination(
        upstream->origin.host, upstream->origin.port, caller.rules.get());
    if (!allowed.ok()) return allowed;
  }
  std::shared_ptr<const OriginRoute> route;
  if (options_.origins != nullptr) {
    route = options_.origins->RouteFor(upstream->origin);
    if (options_.ejection != nullptr) {
      absl::Status ejected = options_.ejection->Admit(
          record.origin, route->entry, route->ejection);
      if (!ejected.ok()) return ejected;
    }
    if (!route->inject.empty()) {
      absl::Status injected = Inject(*route, caller.identity, *upstream);
      if (!injected.ok()) return injected;
    }
  }
  CallTimeouts timeouts;
  timeouts.requested = upstream->timeout;
  timeouts.grpc_remaining = GrpcRemaining(context);
  // A stream's total time is bounded by --max_timeout when the caller gives
  // neither a timeout nor a deadline: long event streams are its normal case.
  timeouts.fallback =
      rpc == Rpc::kDo ? options_.default_timeout : options_.max_timeout;
  timeouts.max = options_.max_timeout;
  absl::StatusOr<Deadline> deadline =
      Deadline::ForCall(clock_, record.start, timeouts);
  if (!deadline.ok()) return deadline.status();
  // The request body is held until the call ends; a stream's pump holds up
  // to two 64 KiB chunks besides.
  auto budget = std::make_unique<BudgetLease>(options_.budget);
  const size_t held =
      upstream->body.size() +
      (rpc == Rpc::kDoStream ? 2 * defaults::kStreamChunkBytes : 0);
  if (!budget->Grow(held)) {
    return options_.budget->Exhausted("the request", held);
  }
  const size_t caller_limit =
      caller.rules != nullptr && caller.rules->max_inflight.has_value()
          ? *caller.rules->max_inflight
          : options_.max_inflight_per_caller;
  return Admitted{std::make_shared<UpstreamRequest>(*std::move(upstream)),
                  *deadline, caller_limit, std::move(budget), std::move(route)};
}

absl::Status Admission::Inject(const OriginRoute& route,
                               absl::string_view identity,
                               UpstreamRequest& request) {
  for (const InjectedHeader& header : route.inject) {
    if (!header.AppliesTo(identity)) continue;
    const auto own = std::find_if(
        request.headers.begin(), request.headers.end(), [&](const auto& h) {
          return absl::EqualsIgnoreCase(h.first, header.name);
        });
    if (own != request.headers.end()) {
      if (header.caller_may_set) continue;  // the caller's own wins
      return WithFieldViolation(
          absl::InvalidArgumentError(
              absl::StrCat("header ", header.name, " is set by egress for ",
                           request.origin.Key(), " (", route.entry,
                           "); the request may not set it")),
          absl::StrCat("headers[", own - request.headers.begin(), "]"));
    }
    absl::StatusOr<std::string> value = header.value->Value();
    if (!value.ok()) {
      // The message names the file, never a value.
      return WithReason(
          absl::FailedPreconditionError(absl::StrCat(
              "the value of header ", header.name, " that ", route.entry,
              " injects cannot be read: ", value.status().message(),
              "; the upstream was not contacted")),
          ErrorReason::kCredentialUnavailable,
          {{"origin", request.origin.Key()}, {"header", header.name}});
    }
    request.headers.emplace_back(header.name, *std::move(value));
  }
  return absl::OkStatus();
}

absl::Status Admission::CheckTaken(const grpc::ServerContextBase& context,
                                   const Deadline& deadline,
                                   nanoseconds queued) const {
  if (deadline.Expired()) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "deadline expired after %.3fs waiting for a worker; the upstream was "
        "not contacted",
        Seconds(queued)));
  }
  if (context.IsCancelled()) {
    return absl::CancelledError("call cancelled before a worker took it");
  }
  return absl::OkStatus();
}

}  // namespace egress
