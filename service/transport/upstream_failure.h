// UpstreamFailure: why one attempt at an upstream exchange failed, decided
// from facts alone.
//
// HttpSession gathers what it saw of an attempt (httplib's error code, what
// the UpstreamStream recorded, whether the connect watchdog or a cancel
// struck, whether the head had arrived) and ClassifyFailure turns them into
// one typed reason. The session then words the status for the caller and
// decides on retries and error counts from the reason, never from elapsed
// time or message text. Pure functions; unit-tested without sockets
// (tests/service/upstream_failure_test.cc).
//
// Thread safety: pure functions.
#pragma once

#include <httplib.h>

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "service/base/error_details.h"
#include "service/transport/upstream_stream.h"

namespace egress {

enum class UpstreamFailure {
  kNone,                  // the attempt succeeded
  kAbandoned,             // the sink (the call) stopped it: its own status
  kCancelled,             // aborted: the caller went away or the drain ended
  kDeadline,              // the deadline passed waiting on the upstream
  kIdle,                  // no bytes for the idle timeout (streams)
  kBadHead,               // the response head broke a limit or the syntax
  kConnectTimeout,        // no connection within --connect_timeout
  kConnectDeadline,       // the call's deadline ended the connect
  kConnectRefused,        // refused or unreachable
  kSendFailed,            // closed or reset while sending the request
  kClosedBeforeResponse,  // closed or reset before any response
  kBodyIncomplete,        // closed, reset or misframed after the head
  kTlsNameMismatch,       // the certificate is not for the host
  kTlsVerifyFailed,       // the certificate chain did not verify
  kTlsHandshakeFailed,    // any other TLS failure
  kProxyConnectFailed,    // the upstream proxy: no connection, or no answer
  kProxyRefused,          // the upstream proxy answered with an error
  kOther,                 // an httplib error not listed above
};

// What one attempt showed; filled by HttpSession after httplib returns.
struct AttemptFacts {
  httplib::Error error = httplib::Error::Success;
  UpstreamExchange::Failure stream = UpstreamExchange::Failure::kNone;
  bool sink_aborted = false;    // the sink returned false
  bool cancelled = false;       // Abort was called during the exchange
  bool watchdog_fired = false;  // the deadline passed during the connect
  bool got_response = false;    // the final response head had arrived
  // The deadline, not --connect_timeout, bounded the connect.
  bool connect_cut_by_deadline = false;
  long verify_result = 0;  // X509_V_OK, or the first verification failure
};

UpstreamFailure ClassifyFailure(const AttemptFacts& facts);

// The gRPC code a failure is answered with; kAbandoned has none of its own
// (the sink's status is used) and gives kUnknown.
absl::StatusCode FailureCode(UpstreamFailure failure);

// The ErrorInfo reason of a failure (kAbandoned has the sink's).
ErrorReason FailureReason(UpstreamFailure failure);

// A new connection could not be made: the next address may be tried.
bool IsConnectFailure(UpstreamFailure failure);

// On a reused connection, a failure that may only mean the upstream closed
// it while idle (nothing of a response arrived): the request may be resent
// on a fresh connection when that is safe.
bool MayBeStaleConnection(UpstreamFailure failure);

// Not the upstream's fault, so not counted against the session: a call that
// went away, or a sink that stopped on purpose.
bool IsSessionError(UpstreamFailure failure);

// Where, and within which bounds, an attempt failed: what its status names.
struct FailureScene {
  std::string where;    // the origin, with the address when it is not the host
  std::string origin;   // the origin's key, for ErrorInfo
  std::string address;  // the address connected to (may be empty)
  std::string host;     // the host name the certificate must match
  std::chrono::nanoseconds budget{0};          // the time the attempt had
  std::chrono::nanoseconds connect_budget{0};  // the connect's share of it
  std::chrono::nanoseconds idle_timeout{0};    // --stream_idle_timeout
  absl::Status head_error;      // kBadHead: what was wrong with the head
  absl::Status abandon_status;  // kAbandoned: the sink's own status
  std::string proxy;            // an upstream proxy's URL, when one is used
  int proxy_status = 0;         // kProxyRefused: the proxy's answer
  std::string proxy_detail;     // kProxyConnectFailed: what went wrong
};

// The status a failed attempt is answered with, worded for the caller, with
// its ErrorInfo reason (the sink's and a broken head's keep their own). OK
// for kNone. Reads OpenSSL's error queue of this thread for a failed
// handshake.
absl::Status FailureStatus(UpstreamFailure failure, const AttemptFacts& facts,
                           const FailureScene& scene);

// "connect_refused", ...: for logs and labels.
const char* UpstreamFailureName(UpstreamFailure failure);

}  // namespace egress
