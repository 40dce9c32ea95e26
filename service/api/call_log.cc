#include "service/api/call_log.h"

#include <algorithm>
#include <random>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/base/error_details.h"
#include "service/base/log.h"
#include "service/policy/destination_policy.h"

namespace egress {
namespace {

uint64_t RandomSalt() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

}  // namespace

CallLog::CallLog(Metrics& metrics, const Clock& clock, bool access_log)
    : metrics_(metrics),
      clock_(clock),
      access_log_(access_log),
      id_salt_(RandomSalt()) {}

bool IsValidTraceparent(absl::string_view v) {
  // version "-" trace-id "-" parent-id "-" flags; a later version may append
  // "-..." fields, which are kept.
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') {
    return false;
  }
  if (v.size() > 55 && (v[55] != '-' || v.substr(0, 2) == "00")) return false;
  const auto hex = [](absl::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
  };
  const absl::string_view version = v.substr(0, 2), trace = v.substr(3, 32),
                          parent = v.substr(36, 16), flags = v.substr(53, 2);
  if (!hex(version) || !hex(trace) || !hex(parent) || !hex(flags)) return false;
  if (version == "ff") return false;
  if (trace == std::string(32, '0') || parent == std::string(16, '0')) {
    return false;
  }
  return v.size() <= 512 && std::all_of(v.begin(), v.end(), [](char c) {
           return c > 0x20 && c < 0x7f;
         });
}

void CallLog::Begin(const CallerTrace& trace, MonoTime start,
                    CallContext& record) {
  Begin(trace.request_id, start, record);
  if (trace.traceparent && IsValidTraceparent(*trace.traceparent)) {
    record.traceparent = std::string(*trace.traceparent);
    if (trace.tracestate &&
        trace.tracestate->size() <= defaults::kMaxTraceStateBytes &&
        std::all_of(trace.tracestate->begin(), trace.tracestate->end(),
                    [](char c) { return c >= 0x20 && c < 0x7f; })) {
      record.tracestate = std::string(*trace.tracestate);
    }
  }
}

void CallLog::Begin(std::optional<absl::string_view> caller_request_id,
                    MonoTime start, CallContext& record) {
  record.start = start;
  if (caller_request_id &&
      caller_request_id->size() <= defaults::kMaxRequestIdBytes) {
    record.request_id = absl::CHexEscape(*caller_request_id);
  } else {
    record.request_id =
        absl::StrFormat("%016x", next_id_.fetch_add(1) ^ id_salt_);
  }
  metrics_.requests_in_flight().Increment();
}

std::chrono::nanoseconds CallLog::Complete(const CallContext& r,
                                           const absl::Status& status) {
  const std::chrono::nanoseconds total = clock_.Now() - r.start;
  const double seconds = Seconds(total);
  metrics_.RecordCall(r.method, r.http_status, status.code(), seconds);
  metrics_.RecordFailure(status);
  metrics_.requests_in_flight().Decrement();
  const std::string id = absl::StrCat("[", r.request_id, "] ");
  if (absl::IsPermissionDenied(status)) {
    metrics_.RecordPolicyDenied(PolicyRuleOf(status));
    LogWarning(absl::StrCat(id, "policy: caller ", r.identity, " url ",
                            absl::CHexEscape(r.url.substr(0, 200)), ": ",
                            status.message()));
  } else if (absl::IsUnauthenticated(status)) {
    LogWarning(absl::StrCat(id, "auth: refused a call from ", r.identity, ": ",
                            status.message()));
  }
  if (access_log_) {
    const bool json = GetLogFormat() == LogFormat::kJson;
    LogFields fields;
    if (json) fields.Add("request_id", r.request_id);
    fields.Add("caller", r.identity)
        .Add("method", absl::CHexEscape(r.method.substr(0, 32)))
        .Add("origin", r.origin)
        .Add("outcome", absl::StatusCodeToString(status.code()))
        .Add("status", r.http_status)
        .Add("duration_ms", seconds * 1000)
        .Add("attempts", r.attempts)
        .Add("reused", r.reused);
    if (!status.ok()) fields.Add("reason", CallerReason(status));
    if (!r.traceparent.empty()) fields.Add("traceparent", r.traceparent);
    if (!r.tracestate.empty()) fields.Add("tracestate", r.tracestate);
    LogEvent(LogLevel::kInfo, json ? "access" : absl::StrCat(id, "access"),
             fields);
  }
  return total;
}

}  // namespace egress
