#include "service/call_log.h"

#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/destination_policy.h"
#include "service/log.h"

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

void CallLog::Begin(std::optional<absl::string_view> caller_request_id,
                    MonoTime start, CallRecord& record) {
  record.start = start;
  if (caller_request_id && caller_request_id->size() <= kMaxRequestIdBytes) {
    record.request_id = absl::CHexEscape(*caller_request_id);
  } else {
    record.request_id =
        absl::StrFormat("%016x", next_id_.fetch_add(1) ^ id_salt_);
  }
  metrics_.requests_in_flight().Increment();
}

std::chrono::nanoseconds CallLog::Complete(const CallRecord& r,
                                           const absl::Status& status) {
  const std::chrono::nanoseconds total = clock_.Now() - r.start;
  const double seconds = Seconds(total);
  metrics_.RecordCall(r.method, r.http_status, status.code(), seconds);
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
    LogInfo(absl::StrFormat(
        "%saccess caller=%s method=%s origin=%s outcome=%s status=%d "
        "duration_ms=%.3f attempts=%d reused=%s",
        id, r.identity, absl::CHexEscape(r.method.substr(0, 32)),
        r.origin.empty() ? "-" : r.origin,
        absl::StatusCodeToString(status.code()), r.http_status, seconds * 1000,
        r.attempts, r.reused ? "true" : "false"));
  }
  return total;
}

}  // namespace egress
