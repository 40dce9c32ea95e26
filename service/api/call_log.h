// CallLog: the bookkeeping every call gets, whichever RPC it came by: its
// request id, the in-flight gauge, the per-call metrics, a warning for a
// refusal by policy or authentication, and the access log line.
//
// Usage (egress_service.cc):
//   CallContext record;
//   log.Begin(caller_request_id, clock.Now(), record);   // on arrival
//   ... fill record.method, identity, origin, http_status ...
//   std::chrono::nanoseconds total = log.Complete(record, status);  // once
//
// Thread safety: thread-safe; each CallContext belongs to one call.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "service/base/call_context.h"
#include "service/base/clock.h"
#include "service/telemetry/metrics.h"

namespace egress {

// What the caller's gRPC metadata says about the call's identity in traces.
struct CallerTrace {
  std::optional<absl::string_view> request_id;   // x-request-id
  std::optional<absl::string_view> traceparent;  // W3C trace context
  std::optional<absl::string_view> tracestate;
};

// True for a W3C traceparent: "vv-<32 hex>-<16 hex>-<2 hex>", lower-case, the
// ids not all zero, version not ff.
bool IsValidTraceparent(absl::string_view value);

class CallLog {
 public:
  // REQUIRES: metrics and clock outlive the log.
  CallLog(Metrics& metrics, const Clock& clock, bool access_log);

  // A call arrives at `start`: its request id (the caller's, C-escaped, when
  // it gave one of at most defaults::kMaxRequestIdBytes, else a generated one),
  // and the in-flight gauge.
  void Begin(std::optional<absl::string_view> caller_request_id, MonoTime start,
             CallContext& record);
  // The same, also keeping the trace context when it is well-formed (a
  // malformed one is dropped, as W3C asks).
  void Begin(const CallerTrace& trace, MonoTime start, CallContext& record);
  // A call ends with `status`: metrics, a warning for a refusal by policy or
  // authentication (naming the caller), the access log line. Returns the
  // call's total time. Called once per Begin.
  std::chrono::nanoseconds Complete(const CallContext& record,
                                    const absl::Status& status);

 private:
  Metrics& metrics_;
  const Clock& clock_;
  const bool access_log_;
  std::atomic<uint64_t> next_id_{1};
  // Makes generated request ids differ between processes.
  const uint64_t id_salt_;
};

}  // namespace egress
