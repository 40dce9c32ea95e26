#include "service/base/error_details.h"

#include <array>

#include "third_party/googleapis/google/rpc/error_details.pb.h"

namespace egress {
namespace {

constexpr char kErrorInfoUrl[] = "type.googleapis.com/google.rpc.ErrorInfo";
constexpr char kRetryInfoUrl[] = "type.googleapis.com/google.rpc.RetryInfo";
constexpr char kBadRequestUrl[] = "type.googleapis.com/google.rpc.BadRequest";

// Every reason: its name, the gRPC code it comes with, when, and the
// ErrorInfo metadata keys, in ErrorReason's order (checked by
// status_mapping_test). The reason tables of docs/errors.md and README.md are
// generated from it (bazel run //docs:gen_reference).
constexpr ErrorReasonDoc kReasons[] = {
    {ErrorReason::kInvalidRequest, "INVALID_REQUEST", "INVALID_ARGUMENT",
     "a field of the request is invalid (a `BadRequest` names it)", "`field`"},
    {ErrorReason::kRequestTooLarge, "REQUEST_TOO_LARGE", "RESOURCE_EXHAUSTED",
     "the body is over `--max_request_bytes`", "`limit`"},
    {ErrorReason::kUnauthenticated, "UNAUTHENTICATED", "UNAUTHENTICATED",
     "no or wrong bearer token or client certificate", ""},
    {ErrorReason::kDestinationDenied, "DESTINATION_DENIED", "PERMISSION_DENIED",
     "the policy refuses the host, address or port", "`rule`, `refused`"},
    {ErrorReason::kDnsFailed, "DNS_FAILED",
     "UNAVAILABLE (DEADLINE_EXCEEDED when the deadline cut it)",
     "the host does not resolve", "`host`, `origin`"},
    {ErrorReason::kConnectRefused, "CONNECT_REFUSED", "UNAVAILABLE",
     "the connection was refused or the address is unreachable",
     "`origin`, `address`"},
    {ErrorReason::kConnectTimeout, "CONNECT_TIMEOUT", "UNAVAILABLE",
     "no connection within `--connect_timeout`", "`origin`, `address`"},
    {ErrorReason::kTlsVerifyFailed, "TLS_VERIFY_FAILED", "UNAVAILABLE",
     "the certificate did not verify (expired, unknown issuer, ...) or does "
     "not match the host",
     "`origin`, `address`"},
    {ErrorReason::kTlsHandshakeFailed, "TLS_HANDSHAKE_FAILED", "UNAVAILABLE",
     "any other TLS failure (protocol version, cipher, ...)",
     "`origin`, `address`"},
    {ErrorReason::kUpstreamReset, "UPSTREAM_RESET", "UNAVAILABLE",
     "the connection closed or was reset before a response",
     "`origin`, `address`"},
    {ErrorReason::kBodyIncomplete, "BODY_INCOMPLETE", "UNAVAILABLE",
     "the body ended early or its framing broke", "`origin`, `address`"},
    {ErrorReason::kBadResponse, "BAD_RESPONSE", "UNAVAILABLE",
     "a response head HTTP does not allow (bad status line, conflicting "
     "framing, an unasked 101)",
     "`origin`, `address`"},
    {ErrorReason::kHeadTooLarge, "HEAD_TOO_LARGE", "UNAVAILABLE",
     "a response line, the header count or the head over a limit", "`limit`"},
    {ErrorReason::kResponseTooLarge, "RESPONSE_TOO_LARGE", "RESOURCE_EXHAUSTED",
     "the body is over `--max_response_bytes` (Do) or `--max_stream_bytes` "
     "(DoStream)",
     "`limit`, `origin`"},
    {ErrorReason::kUpstreamTimeout, "UPSTREAM_TIMEOUT", "DEADLINE_EXCEEDED",
     "no complete response before the deadline", "`origin`, `address`"},
    {ErrorReason::kStreamIdle, "STREAM_IDLE", "DEADLINE_EXCEEDED",
     "no bytes from the upstream for `--stream_idle_timeout`",
     "`origin`, `address`"},
    {ErrorReason::kSlowReader, "SLOW_READER", "DEADLINE_EXCEEDED",
     "the caller read nothing of a stream for `--stream_idle_timeout`", ""},
    {ErrorReason::kDeadlineExceeded, "DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED",
     "the call's deadline passed before the exchange began", ""},
    {ErrorReason::kQueueFull, "QUEUE_FULL", "RESOURCE_EXHAUSTED",
     "every worker busy and `--max_queue` calls waiting (RetryInfo)",
     "`limit`, `origin`"},
    {ErrorReason::kOriginLimit, "ORIGIN_LIMIT", "RESOURCE_EXHAUSTED",
     "waited for a slot of `--max_inflight_per_origin` until the deadline "
     "(RetryInfo)",
     "`origin`, `limit`"},
    {ErrorReason::kCallerLimit, "CALLER_LIMIT", "RESOURCE_EXHAUSTED",
     "waited for a slot of the caller's in-flight limit until the deadline "
     "(RetryInfo)",
     "`origin`, `caller`, `limit`"},
    {ErrorReason::kRateLimited, "RATE_LIMITED", "RESOURCE_EXHAUSTED",
     "over its origin entry's `rate_limit` or `--rate_limit_per_caller`, and "
     "its turn would come later than it may wait (RetryInfo: when it would)",
     "`origin`, `caller`, `limit`"},
    {ErrorReason::kMemoryBudget, "MEMORY_BUDGET", "RESOURCE_EXHAUSTED",
     "`--max_buffered_bytes` is in use by other calls (RetryInfo)", "`limit`"},
    {ErrorReason::kCancelled, "CANCELLED", "CANCELLED", "the caller went away",
     ""},
    {ErrorReason::kShuttingDown, "SHUTTING_DOWN", "CANCELLED",
     "egressd is draining and the call had not started", ""},
    {ErrorReason::kOriginEjected, "ORIGIN_EJECTED", "UNAVAILABLE",
     "the origin failed so many times in a row (its entry's `ejection`) that "
     "calls to it fail at once until a probe call gets through (RetryInfo: "
     "the time left)",
     "`origin`, `entry`"},
    {ErrorReason::kProxyConnectFailed, "PROXY_CONNECT_FAILED", "UNAVAILABLE",
     "the origin entry's upstream proxy could not be reached, or closed the "
     "connection before answering",
     "`origin`, `proxy`"},
    {ErrorReason::kProxyRefused, "PROXY_REFUSED", "UNAVAILABLE",
     "the upstream proxy refused the tunnel (CONNECT answered with an error: "
     "407 for wrong credentials, 403 by its own policy)",
     "`origin`, `proxy`, `proxy_status`"},
    {ErrorReason::kCredentialUnavailable, "CREDENTIAL_UNAVAILABLE",
     "FAILED_PRECONDITION",
     "the file of a header the origin entry injects cannot be read (the "
     "upstream was not contacted)",
     "`origin`, `header`"},
    {ErrorReason::kUpstreamFailed, "UPSTREAM_FAILED", "UNAVAILABLE",
     "any other upstream failure", "`origin`, `address`"},
    {ErrorReason::kInternal, "INTERNAL", "INTERNAL",
     "a failure of egressd itself", ""},
};
constexpr size_t kReasonCount = sizeof(kReasons) / sizeof(kReasons[0]);

constexpr std::array<ErrorReason, kReasonCount> AllReasons() {
  std::array<ErrorReason, kReasonCount> all{};
  for (size_t i = 0; i < kReasonCount; ++i) all[i] = kReasons[i].reason;
  return all;
}
constexpr std::array<ErrorReason, kReasonCount> kAllReasons = AllReasons();

absl::Cord Serialized(const google::protobuf::MessageLite& message) {
  return absl::Cord(message.SerializeAsString());
}

}  // namespace

absl::Span<const ErrorReason> AllErrorReasons() { return kAllReasons; }

absl::Span<const ErrorReasonDoc> ErrorReasonDocs() { return kReasons; }

const char* ErrorReasonName(ErrorReason reason) {
  const auto i = static_cast<size_t>(reason);
  return i < kReasonCount ? kReasons[i].name : "INTERNAL";
}

absl::Status WithReason(absl::Status status, ErrorReason reason,
                        ErrorMetadata metadata) {
  if (status.ok()) return status;
  google::rpc::ErrorInfo info;
  info.set_reason(ErrorReasonName(reason));
  info.set_domain(kErrorDomain);
  for (const auto& [key, value] : metadata) {
    if (!value.empty()) {
      (*info.mutable_metadata())[std::string(key)] = std::string(value);
    }
  }
  status.SetPayload(kErrorInfoUrl, Serialized(info));
  return status;
}

absl::Status WithRetryDelay(absl::Status status,
                            std::chrono::nanoseconds delay) {
  if (status.ok()) return status;
  google::rpc::RetryInfo retry;
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(delay);
  retry.mutable_retry_delay()->set_seconds(seconds.count());
  retry.mutable_retry_delay()->set_nanos(
      static_cast<int32_t>((delay - seconds).count()));
  status.SetPayload(kRetryInfoUrl, Serialized(retry));
  return status;
}

absl::Status WithFieldViolation(absl::Status status, absl::string_view field) {
  if (status.ok()) return status;
  google::rpc::BadRequest bad;
  google::rpc::BadRequest::FieldViolation* violation =
      bad.add_field_violations();
  violation->set_field(std::string(field));
  violation->set_description(std::string(status.message()));
  status.SetPayload(kBadRequestUrl, Serialized(bad));
  return WithReason(std::move(status), ErrorReason::kInvalidRequest,
                    {{"field", field}});
}

absl::Status WithDetailsOf(const absl::Status& from, absl::StatusCode code,
                           absl::string_view message) {
  absl::Status to(code, message);
  from.ForEachPayload([&to](absl::string_view url, const absl::Cord& value) {
    to.SetPayload(url, value);
  });
  return to;
}

std::optional<std::string> ReasonOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrorInfoUrl);
  if (!payload.has_value()) return std::nullopt;
  google::rpc::ErrorInfo info;
  if (!info.ParseFromString(std::string(*payload))) return std::nullopt;
  return info.reason();
}

std::string CallerReason(const absl::Status& status) {
  if (std::optional<std::string> own = ReasonOf(status)) return *own;
  return ErrorReasonName(DefaultReason(status.code()));
}

ErrorReason DefaultReason(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
      return ErrorReason::kInvalidRequest;
    case absl::StatusCode::kUnauthenticated:
      return ErrorReason::kUnauthenticated;
    case absl::StatusCode::kPermissionDenied:
      return ErrorReason::kDestinationDenied;
    case absl::StatusCode::kDeadlineExceeded:
      return ErrorReason::kDeadlineExceeded;
    case absl::StatusCode::kCancelled:
      return ErrorReason::kCancelled;
    case absl::StatusCode::kUnavailable:
      return ErrorReason::kUpstreamFailed;
    default:
      return ErrorReason::kInternal;
  }
}

}  // namespace egress
