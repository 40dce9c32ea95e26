#include "service/transport/upstream_failure.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/base/clock.h"

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
         failure == UpstreamFailure::kConnectRefused ||
         failure == UpstreamFailure::kProxyConnectFailed;
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
    case UpstreamFailure::kProxyConnectFailed:
      return ErrorReason::kProxyConnectFailed;
    case UpstreamFailure::kProxyRefused:
      return ErrorReason::kProxyRefused;
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
    case UpstreamFailure::kProxyConnectFailed:
      return "proxy_connect_failed";
    case UpstreamFailure::kProxyRefused:
      return "proxy_refused";
    case UpstreamFailure::kOther:
      return "other";
  }
  return "other";
}

namespace {

// FailureStatus without its ErrorInfo.
absl::Status FailureText(UpstreamFailure failure, const AttemptFacts& facts,
                         const FailureScene& scene) {
  const std::string& where = scene.where;
  switch (failure) {
    case UpstreamFailure::kNone:
      return absl::OkStatus();
    case UpstreamFailure::kAbandoned:
      return scene.abandon_status;
    case UpstreamFailure::kCancelled:
      return absl::CancelledError(absl::StrFormat(
          "%s: exchange abandoned: the caller went away", where));
    case UpstreamFailure::kDeadline:
      return absl::DeadlineExceededError(
          absl::StrFormat("%s: no complete response within %.3fs", where,
                          Seconds(scene.budget)));
    case UpstreamFailure::kIdle:
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s: no data from the upstream for %.3fs (--stream_idle_timeout)",
          where, Seconds(scene.idle_timeout)));
    case UpstreamFailure::kBadHead:
      return WithDetailsOf(
          scene.head_error, absl::StatusCode::kUnavailable,
          absl::StrCat(where, ": ", scene.head_error.message()));
    case UpstreamFailure::kConnectTimeout:
    case UpstreamFailure::kConnectDeadline:
      // The upstream did not answer within --connect_timeout: it is
      // unreachable, and the caller, whose deadline has time left, may try
      // again. Only when the call's own deadline cut the connect short is it
      // DEADLINE_EXCEEDED.
      return absl::Status(
          FailureCode(failure),
          absl::StrFormat("connect to %s timed out after %.3fs", where,
                          Seconds(scene.connect_budget)));
    case UpstreamFailure::kConnectRefused:
      return absl::UnavailableError(absl::StrFormat(
          "connect to %s failed: connection refused or unreachable", where));
    case UpstreamFailure::kSendFailed:
      return absl::UnavailableError(absl::StrFormat(
          "%s: connection closed or reset while sending the request", where));
    case UpstreamFailure::kClosedBeforeResponse:
      return absl::UnavailableError(absl::StrFormat(
          "%s: connection closed or reset before any response", where));
    case UpstreamFailure::kBodyIncomplete:
      return absl::UnavailableError(absl::StrFormat(
          "%s: response body incomplete: the connection closed or was reset, "
          "or the body's framing was broken (Content-Length or chunks)",
          where));
    case UpstreamFailure::kTlsNameMismatch:
      return absl::UnavailableError(absl::StrFormat(
          "%s: certificate verify failed: the certificate does not match "
          "host name \"%s\"",
          where, scene.host));
    case UpstreamFailure::kTlsVerifyFailed:
      return absl::UnavailableError(
          absl::StrFormat("%s: certificate verify failed: %s", where,
                          X509_verify_cert_error_string(facts.verify_result)));
    case UpstreamFailure::kTlsHandshakeFailed: {
      const unsigned long tls_error = ERR_peek_error();  // the first: the cause
      const char* reason =
          tls_error != 0 ? ERR_reason_error_string(tls_error) : nullptr;
      return absl::UnavailableError(absl::StrFormat(
          "%s: TLS handshake failed%s%s", where, reason != nullptr ? ": " : "",
          reason != nullptr ? reason : ""));
    }
    case UpstreamFailure::kProxyConnectFailed:
      return absl::UnavailableError(absl::StrFormat(
          "%s: upstream proxy %s failed: %s", where, scene.proxy,
          scene.proxy_detail.empty() ? "connection refused or unreachable"
                                     : scene.proxy_detail));
    case UpstreamFailure::kProxyRefused:
      return absl::UnavailableError(absl::StrFormat(
          "%s: upstream proxy %s refused the request with status %d%s", where,
          scene.proxy, scene.proxy_status,
          scene.proxy_status == 407
              ? " (Proxy Authentication Required: check the entry's "
                "proxy.credentials_file)"
              : ""));
    case UpstreamFailure::kOther:
      break;
  }
  return absl::UnavailableError(
      absl::StrFormat("%s: upstream exchange failed: %s", where,
                      httplib::to_string(facts.error)));
}

}  // namespace

absl::Status FailureStatus(UpstreamFailure failure, const AttemptFacts& facts,
                           const FailureScene& scene) {
  // Most exchanges succeed: no text is formed for them.
  if (failure == UpstreamFailure::kNone) return absl::OkStatus();
  absl::Status status = FailureText(failure, facts, scene);
  // The sink's own status (a body over a limit, a slow reader) and a broken
  // head have their reasons already.
  if (failure == UpstreamFailure::kAbandoned || ReasonOf(status)) {
    return status;
  }
  if (failure == UpstreamFailure::kProxyConnectFailed ||
      failure == UpstreamFailure::kProxyRefused) {
    const std::string proxy_status =
        scene.proxy_status > 0 ? absl::StrCat(scene.proxy_status) : "";
    return WithReason(std::move(status), FailureReason(failure),
                      {{"origin", scene.origin},
                       {"proxy", scene.proxy},
                       {"proxy_status", proxy_status}});
  }
  return WithReason(std::move(status), FailureReason(failure),
                    {{"origin", scene.origin}, {"address", scene.address}});
}

}  // namespace egress
