#include "service/upstream_failure.h"

#include <openssl/x509_vfy.h>

namespace egress {

UpstreamFailure ClassifyFailure(const AttemptFacts& f) {
  using Stream = UpstreamExchange::Failure;
  // What stopped the exchange on purpose comes first: the socket errors that
  // follow it are its consequence, not the upstream's doing.
  if (f.sink_aborted || f.stream == Stream::kRejected) {
    return UpstreamFailure::kAbandoned;
  }
  if (f.cancelled) return UpstreamFailure::kCancelled;
  if (f.watchdog_fired || f.stream == Stream::kDeadline) {
    return UpstreamFailure::kDeadline;
  }
  if (f.stream == Stream::kIdle) return UpstreamFailure::kIdle;
  if (f.stream == Stream::kHead) return UpstreamFailure::kBadHead;
  switch (f.error) {
    case httplib::Error::Success:
      return UpstreamFailure::kNone;
    case httplib::Error::ConnectionTimeout:
      return f.connect_cut_by_deadline ? UpstreamFailure::kConnectDeadline
                                       : UpstreamFailure::kConnectTimeout;
    case httplib::Error::Connection:
      return UpstreamFailure::kConnectRefused;
    case httplib::Error::Write:
      return UpstreamFailure::kSendFailed;
    case httplib::Error::Read:
      return f.got_response ? UpstreamFailure::kBodyIncomplete
                            : UpstreamFailure::kClosedBeforeResponse;
    case httplib::Error::SSLConnection:
      if (f.verify_result == X509_V_ERR_HOSTNAME_MISMATCH ||
          f.verify_result == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        return UpstreamFailure::kTlsNameMismatch;
      }
      return f.verify_result != X509_V_OK
                 ? UpstreamFailure::kTlsVerifyFailed
                 : UpstreamFailure::kTlsHandshakeFailed;
    default:
      return UpstreamFailure::kOther;
  }
}

absl::StatusCode FailureCode(UpstreamFailure failure) {
  switch (failure) {
    case UpstreamFailure::kNone:
      return absl::StatusCode::kOk;
    case UpstreamFailure::kAbandoned:
      return absl::StatusCode::kUnknown;
    case UpstreamFailure::kCancelled:
      return absl::StatusCode::kCancelled;
    case UpstreamFailure::kDeadline:
    case UpstreamFailure::kIdle:
    case UpstreamFailure::kConnectDeadline:
      return absl::StatusCode::kDeadlineExceeded;
    default:
      // The upstream could not be reached or broke the exchange; the caller
      // may try again.
      return absl::StatusCode::kUnavailable;
  }
}

bool IsConnectFailure(UpstreamFailure failure) {
  return failure == UpstreamFailure::kConnectTimeout ||
         failure == UpstreamFailure::kConnectDeadline ||
         failure == UpstreamFailure::kConnectRefused;
}

bool MayBeStaleConnection(UpstreamFailure failure) {
  switch (failure) {
    case UpstreamFailure::kSendFailed:
    case UpstreamFailure::kClosedBeforeResponse:
    case UpstreamFailure::kTlsHandshakeFailed:
    case UpstreamFailure::kOther:
      return true;
    default:
      return false;
  }
}

ErrorReason FailureReason(UpstreamFailure failure) {
  switch (failure) {
    case UpstreamFailure::kNone:
    case UpstreamFailure::kAbandoned:
    case UpstreamFailure::kOther:
      return ErrorReason::kUpstreamFailed;
    case UpstreamFailure::kCancelled:
      return ErrorReason::kCancelled;
    case UpstreamFailure::kDeadline:
    case UpstreamFailure::kConnectDeadline:
      return ErrorReason::kUpstreamTimeout;
    case UpstreamFailure::kIdle:
      return ErrorReason::kStreamIdle;
    case UpstreamFailure::kBadHead:
      return ErrorReason::kBadResponse;
    case UpstreamFailure::kConnectTimeout:
      return ErrorReason::kConnectTimeout;
    case UpstreamFailure::kConnectRefused:
      return ErrorReason::kConnectRefused;
    case UpstreamFailure::kSendFailed:
    case UpstreamFailure::kClosedBeforeResponse:
      return ErrorReason::kUpstreamReset;
    case UpstreamFailure::kBodyIncomplete:
      return ErrorReason::kBodyIncomplete;
    case UpstreamFailure::kTlsNameMismatch:
    case UpstreamFailure::kTlsVerifyFailed:
      return ErrorReason::kTlsVerifyFailed;
    case UpstreamFailure::kTlsHandshakeFailed:
      return ErrorReason::kTlsHandshakeFailed;
  }
  return ErrorReason::kUpstreamFailed;
}

bool IsSessionError(UpstreamFailure failure) {
  return failure != UpstreamFailure::kNone &&
         failure != UpstreamFailure::kAbandoned &&
         failure != UpstreamFailure::kCancelled;
}

const char* UpstreamFailureName(UpstreamFailure failure) {
  switch (failure) {
    case UpstreamFailure::kNone:
      return "none";
    case UpstreamFailure::kAbandoned:
      return "abandoned";
    case UpstreamFailure::kCancelled:
      return "cancelled";
    case UpstreamFailure::kDeadline:
      return "deadline";
    case UpstreamFailure::kIdle:
      return "idle";
    case UpstreamFailure::kBadHead:
      return "bad_head";
    case UpstreamFailure::kConnectTimeout:
      return "connect_timeout";
    case UpstreamFailure::kConnectDeadline:
      return "connect_deadline";
    case UpstreamFailure::kConnectRefused:
      return "connect_refused";
    case UpstreamFailure::kSendFailed:
      return "send_failed";
    case UpstreamFailure::kClosedBeforeResponse:
      return "closed_before_response";
    case UpstreamFailure::kBodyIncomplete:
      return "body_incomplete";
    case UpstreamFailure::kTlsNameMismatch:
      return "tls_name_mismatch";
    case UpstreamFailure::kTlsVerifyFailed:
      return "tls_verify_failed";
    case UpstreamFailure::kTlsHandshakeFailed:
      return "tls_handshake_failed";
    case UpstreamFailure::kOther:
      return "other";
  }
  return "other";
}

}  // namespace egress
