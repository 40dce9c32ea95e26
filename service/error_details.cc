#include "service/error_details.h"

#include <array>

#include "third_party/googleapis/google/rpc/error_details.pb.h"

namespace egress {
namespace {

constexpr char kErrorInfoUrl[] = "type.googleapis.com/google.rpc.ErrorInfo";
constexpr char kRetryInfoUrl[] = "type.googleapis.com/google.rpc.RetryInfo";
constexpr char kBadRequestUrl[] = "type.googleapis.com/google.rpc.BadRequest";

constexpr std::array kReasons = {
    ErrorReason::kInvalidRequest,     ErrorReason::kRequestTooLarge,
    ErrorReason::kUnauthenticated,    ErrorReason::kDestinationDenied,
    ErrorReason::kDnsFailed,          ErrorReason::kConnectRefused,
    ErrorReason::kConnectTimeout,     ErrorReason::kTlsVerifyFailed,
    ErrorReason::kTlsHandshakeFailed, ErrorReason::kUpstreamReset,
    ErrorReason::kBodyIncomplete,     ErrorReason::kBadResponse,
    ErrorReason::kHeadTooLarge,       ErrorReason::kResponseTooLarge,
    ErrorReason::kUpstreamTimeout,    ErrorReason::kStreamIdle,
    ErrorReason::kSlowReader,         ErrorReason::kDeadlineExceeded,
    ErrorReason::kQueueFull,          ErrorReason::kOriginLimit,
    ErrorReason::kCallerLimit,        ErrorReason::kMemoryBudget,
    ErrorReason::kCancelled,          ErrorReason::kShuttingDown,
    ErrorReason::kUpstreamFailed,     ErrorReason::kInternal,
};

absl::Cord Serialized(const google::protobuf::MessageLite& message) {
  return absl::Cord(message.SerializeAsString());
}

}  // namespace

absl::Span<const ErrorReason> AllErrorReasons() { return kReasons; }

const char* ErrorReasonName(ErrorReason reason) {
  switch (reason) {
    case ErrorReason::kInvalidRequest:
      return "INVALID_REQUEST";
    case ErrorReason::kRequestTooLarge:
      return "REQUEST_TOO_LARGE";
    case ErrorReason::kUnauthenticated:
      return "UNAUTHENTICATED";
    case ErrorReason::kDestinationDenied:
      return "DESTINATION_DENIED";
    case ErrorReason::kDnsFailed:
      return "DNS_FAILED";
    case ErrorReason::kConnectRefused:
      return "CONNECT_REFUSED";
    case ErrorReason::kConnectTimeout:
      return "CONNECT_TIMEOUT";
    case ErrorReason::kTlsVerifyFailed:
      return "TLS_VERIFY_FAILED";
    case ErrorReason::kTlsHandshakeFailed:
      return "TLS_HANDSHAKE_FAILED";
    case ErrorReason::kUpstreamReset:
      return "UPSTREAM_RESET";
    case ErrorReason::kBodyIncomplete:
      return "BODY_INCOMPLETE";
    case ErrorReason::kBadResponse:
      return "BAD_RESPONSE";
    case ErrorReason::kHeadTooLarge:
      return "HEAD_TOO_LARGE";
    case ErrorReason::kResponseTooLarge:
      return "RESPONSE_TOO_LARGE";
    case ErrorReason::kUpstreamTimeout:
      return "UPSTREAM_TIMEOUT";
    case ErrorReason::kStreamIdle:
      return "STREAM_IDLE";
    case ErrorReason::kSlowReader:
      return "SLOW_READER";
    case ErrorReason::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case ErrorReason::kQueueFull:
      return "QUEUE_FULL";
    case ErrorReason::kOriginLimit:
      return "ORIGIN_LIMIT";
    case ErrorReason::kCallerLimit:
      return "CALLER_LIMIT";
    case ErrorReason::kMemoryBudget:
      return "MEMORY_BUDGET";
    case ErrorReason::kCancelled:
      return "CANCELLED";
    case ErrorReason::kShuttingDown:
      return "SHUTTING_DOWN";
    case ErrorReason::kUpstreamFailed:
      return "UPSTREAM_FAILED";
    case ErrorReason::kInternal:
      return "INTERNAL";
  }
  return "INTERNAL";
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
