// ErrorDetails: the machine-readable part of an error. An absl::Status made
// anywhere inside egressd carries, as payloads, the google.rpc details a
// caller receives: an ErrorInfo with a stable reason (ErrorReason) and
// metadata (origin, address, limit, ...), a RetryInfo where waiting helps, and
// BadRequest field violations for an invalid request. ToGrpcStatus
// (status_mapping.h) turns them into the google.rpc.Status that gRPC sends in
// the grpc-status-details-bin trailer. docs/errors.md lists the reasons
// (generated from ErrorReasonDocs).
//
// Thread safety: pure functions.
#pragma once

#include <chrono>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace egress {

// ErrorInfo.domain of every reason.
inline constexpr char kErrorDomain[] = "egress.local";

// The stable reasons, one per cause a caller may act on differently.
enum class ErrorReason {
  kInvalidRequest,      // INVALID_ARGUMENT: a field of the request (BadRequest)
  kRequestTooLarge,     // the body is over --max_request_bytes
  kUnauthenticated,     // no or wrong credentials
  kDestinationDenied,   // the policy refuses the host, address or port
  kDnsFailed,           // the host does not resolve
  kConnectRefused,      // refused or unreachable
  kConnectTimeout,      // no connection within --connect_timeout
  kTlsVerifyFailed,     // the certificate did not verify or match the host
  kTlsHandshakeFailed,  // any other TLS failure
  kUpstreamReset,       // closed or reset before a response
  kBodyIncomplete,      // closed, reset or misframed after the head
  kBadResponse,         // a response head HTTP does not allow
  kHeadTooLarge,        // a response head over a limit
  kResponseTooLarge,    // a body over --max_response_bytes/--max_stream_bytes
  kUpstreamTimeout,     // no complete response before the deadline
  kStreamIdle,          // no bytes for --stream_idle_timeout
  kSlowReader,          // the caller did not read a stream in time
  kDeadlineExceeded,    // the call's deadline passed before the exchange
  kQueueFull,           // every worker busy and --max_queue waiting
  kOriginLimit,    // waited for --max_inflight_per_origin until the deadline
  kCallerLimit,    // waited for the caller's in-flight limit
  kRateLimited,    // over its origin's or its caller's rate limit
  kMemoryBudget,   // --max_buffered_bytes in use
  kCancelled,      // the caller went away
  kShuttingDown,   // egressd is draining
  kOriginEjected,  // the origin failed in a row and is ejected for a while
  kProxyConnectFailed,     // the upstream proxy could not be reached
  kProxyRefused,           // the upstream proxy answered CONNECT with an error
  kCredentialUnavailable,  // an injected header's file cannot be read
  kUpstreamFailed,         // any other upstream failure
  kInternal,               // a failure of egressd itself
};

// Every reason, in the order above (for docs and tests).
absl::Span<const ErrorReason> AllErrorReasons();

// A reason as docs/errors.md and README.md show it (generated).
struct ErrorReasonDoc {
  ErrorReason reason;
  const char* name;      // "DESTINATION_DENIED": the ErrorInfo.reason
  const char* code;      // the gRPC code it comes with, in words
  const char* when;      // what happened
  const char* metadata;  // the ErrorInfo.metadata keys, as Markdown
};
absl::Span<const ErrorReasonDoc> ErrorReasonDocs();

// "DESTINATION_DENIED", ...: the ErrorInfo.reason.
const char* ErrorReasonName(ErrorReason reason);

using ErrorMetadata =
    std::initializer_list<std::pair<absl::string_view, absl::string_view>>;

// `status` with an ErrorInfo of `reason`; empty metadata values are left
// out. Replaces an earlier ErrorInfo. OK stays OK.
absl::Status WithReason(absl::Status status, ErrorReason reason,
                        ErrorMetadata metadata = {});

// `status` with a RetryInfo: retry after `delay`.
absl::Status WithRetryDelay(absl::Status status,
                            std::chrono::nanoseconds delay);

// `status` with a BadRequest naming `field` ("url", "headers[2]") and the
// status message as its description, and reason INVALID_REQUEST.
absl::Status WithFieldViolation(absl::Status status, absl::string_view field);

// A status of `code` and `message` with the details of `from`.
absl::Status WithDetailsOf(const absl::Status& from, absl::StatusCode code,
                           absl::string_view message);

// The ErrorInfo's reason, if `status` has one.
std::optional<std::string> ReasonOf(const absl::Status& status);

// The reason a status without an ErrorInfo gets, from its code alone.
ErrorReason DefaultReason(absl::StatusCode code);

// The reason the caller sees for a non-OK `status`: its own, else the
// default for its code.
std::string CallerReason(const absl::Status& status);

}  // namespace egress
