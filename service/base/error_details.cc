#include "service/base/error_details.h"

#include <array>

#include "third_party/googleapis/google/rpc/error_details.pb.h"

namespace egress {
namespace {

constexpr char kErrorInfoUrl[] = "type.googleapis.com/google.rpc.ErrorInfo";
constexpr char kRetryInfoUrl[] = "type.googleapis.com/google.rpc.RetryInfo";
constexpr char kBadRequestUrl[] = "type.googleapis.com/google.rpc.BadRequest";

// Every reason and its name, in ErrorReason's order (checked by
// status_mapping_test).
struct ReasonName {
  ErrorReason reason;
  const char* name;
};
constexpr ReasonName kReasons[] = {
    {ErrorReason::kInvalidRequest, "INVALID_REQUEST"},
    {ErrorReason::kRequestTooLarge, "REQUEST_TOO_LARGE"},
    {ErrorReason::kUnauthenticated, "UNAUTHENTICATED"},
    {ErrorReason::kDestinationDenied, "DESTINATION_DENIED"},
    {ErrorReason::kDnsFailed, "DNS_FAILED"},
    {ErrorReason::kConnectRefused, "CONNECT_REFUSED"},
    {ErrorReason::kConnectTimeout, "CONNECT_TIMEOUT"},
    {ErrorReason::kTlsVerifyFailed, "TLS_VERIFY_FAILED"},
    {ErrorReason::kTlsHandshakeFailed, "TLS_HANDSHAKE_FAILED"},
    {ErrorReason::kUpstreamReset, "UPSTREAM_RESET"},
    {ErrorReason::kBodyIncomplete, "BODY_INCOMPLETE"},
    {ErrorReason::kBadResponse, "BAD_RESPONSE"},
    {ErrorReason::kHeadTooLarge, "HEAD_TOO_LARGE"},
    {ErrorReason::kResponseTooLarge, "RESPONSE_TOO_LARGE"},
    {ErrorReason::kUpstreamTimeout, "UPSTREAM_TIMEOUT"},
    {ErrorReason::kStreamIdle, "STREAM_IDLE"},
    {ErrorReason::kSlowReader, "SLOW_READER"},
    {ErrorReason::kDeadlineExceeded, "DEADLINE_EXCEEDED"},
    {ErrorReason::kQueueFull, "QUEUE_FULL"},
    {ErrorReason::kOriginLimit, "ORIGIN_LIMIT"},
    {ErrorReason::kCallerLimit, "CALLER_LIMIT"},
    {ErrorReason::kMemoryBudget, "MEMORY_BUDGET"},
    {ErrorReason::kCancelled, "CANCELLED"},
    {ErrorReason::kShuttingDown, "SHUTTING_DOWN"},
    {ErrorReason::kUpstreamFailed, "UPSTREAM_FAILED"},
    {ErrorReason::kInternal, "INTERNAL"},
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
