// The one way tests build an upstream request and a session, and run the
// request over the session as the service does: through PerformCall
// (attempt_loop.h: stale connections are resent) into a WholeResponseSink (Do)
// or the test's own sink (DoStream).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "service/base/defaults.h"
#include "service/base/http_types.h"
#include "service/pool/attempt_loop.h"
#include "service/pool/memory_budget.h"
#include "service/pool/whole_response.h"
#include "service/transport/http_session.h"

namespace egress {

// `method` `scheme`://`host`:`port``target`.
inline UpstreamRequest MakeRequest(const std::string& host, int port,
                                   const std::string& target = "/",
                                   const std::string& method = "GET",
                                   const std::string& scheme = "http") {
  UpstreamRequest request;
  request.method = method;
  request.origin = Origin{scheme, host, static_cast<uint16_t>(port)};
  request.target = target;
  return request;
}

// A session to `scheme`://`host`:`port` (http by default).
inline std::unique_ptr<HttpSession> MakeSession(
    const std::string& host, int port, const SessionOptions& options,
    const Clock& clock, SessionObserver& observer,
    const std::string& scheme = "http") {
  return std::make_unique<HttpSession>(
      Origin{scheme, host, static_cast<uint16_t>(port)}, options, clock,
      observer);
}

// Runs `request` on `session` as Do does, keeping the whole response.
inline absl::StatusOr<UpstreamResponse> SendWhole(
    HttpSession& session, const UpstreamRequest& request,
    const Deadline& deadline, ExchangeCanceller* canceller = nullptr,
    BudgetLease* budget = nullptr,
    size_t max_bytes = defaults::kMaxResponseBytes) {
  ExchangeCanceller own;
  CallPlan call{request, deadline, canceller != nullptr ? *canceller : own};
  WholeResponseSink sink(max_bytes, request.origin.Key(), budget);
  absl::StatusOr<ExchangeSummary> done =
      PerformCall(call, sink, [&](SessionUse use) { return use(session); });
  if (!done.ok()) return done.status();
  return sink.Finish(*done);
}

// Runs `request` on `session` as DoStream does, the response going to `sink`.
inline absl::StatusOr<ExchangeSummary> StreamTo(
    HttpSession& session, const UpstreamRequest& request,
    const Deadline& deadline, std::chrono::nanoseconds idle_timeout,
    ResponseSink& sink, ExchangeCanceller* canceller = nullptr) {
  ExchangeCanceller own;
  CallPlan call{request, deadline, canceller != nullptr ? *canceller : own};
  call.idle_timeout = idle_timeout;
  return PerformCall(call, sink, [&](SessionUse use) { return use(session); });
}

}  // namespace egress
