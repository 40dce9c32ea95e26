#include "service/http_session.h"

#include <httplib.h>

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace egress {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::nanoseconds;

double Seconds(nanoseconds d) { return static_cast<double>(d.count()) / 1e9; }

// What one call to httplib observed, beyond its Error code.
struct ExchangeFlags {
  bool got_response = false;    // the status line and headers arrived
  bool body_too_large = false;  // we stopped reading: over max_response_bytes
  bool timed_out = false;       // we stopped reading: deadline passed
};

}  // namespace

struct HttpSession::Attempt {
  bool reused = false;
  ExchangeFlags flags;
};

HttpSession::HttpSession(Origin origin, const SessionOptions& options,
                         const Clock& clock, SessionObserver& observer)
    : origin_(std::move(origin)),
      options_(options),
      clock_(clock),
      observer_(observer),
      client_(std::make_unique<httplib::Client>(origin_.host, origin_.port)),
      last_used_(clock.Now()) {
  client_->set_keep_alive(true);
  client_->set_tcp_nodelay(true);
  // Bytes pass through untouched: the caller sees the upstream's encoding.
  client_->set_decompress(false);
  client_->set_url_encode(false);
  client_->set_follow_location(false);
  client_->set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    ++connections_opened_;
  });
  observer_.OnSessionCreated();
}

HttpSession::~HttpSession() = default;

absl::StatusOr<UpstreamResponse> HttpSession::Send(
    const UpstreamRequest& request, MonoTime deadline) {
  const MonoTime start = clock_.Now();
  Attempt first;
  absl::StatusOr<UpstreamResponse> result = SendOnce(request, deadline, first);
  int attempts = 1;
  // A keep-alive connection the upstream closed while it sat idle fails before
  // any response byte; resending is safe only when the request is idempotent.
  const bool stale = !result.ok() && first.reused &&
                     !first.flags.got_response && !first.flags.timed_out &&
                     absl::IsUnavailable(result.status());
  if (stale) {
    bool safe =
        IsIdempotentMethod(request.method) ||
        std::any_of(request.headers.begin(), request.headers.end(),
                    [](const auto& h) {
                      return absl::EqualsIgnoreCase(h.first, "Idempotency-Key");
                    });
    if (safe && clock_.Now() < deadline) {
      observer_.OnStaleRetry();
      Attempt second;
      result = SendOnce(request, deadline, second);
      attempts = 2;
    } else if (!safe) {
      result = absl::UnavailableError(absl::StrFormat(
          "%s: reused connection failed (%s); the request may not have been "
          "delivered and %s is not idempotent, so it was not retried",
          origin_.Key(), result.status().message(), request.method));
    }
  }
  last_used_ = clock_.Now();
  if (result.ok()) {
    consecutive_errors_ = 0;
    ++requests_served_;
    result->attempts = attempts;
    result->upstream_time = last_used_ - start;
    return result;
  }
  // Not session errors: a body over the limit (the response's fault, not the
  // connection's) and a stale connection that was not retried. A retry that
  // failed on its fresh connection is one.
  const bool stale_not_retried = stale && attempts == 1;
  if (!absl::IsResourceExhausted(result.status()) && !stale_not_retried) {
    ++consecutive_errors_;
  }
  return result;
}

absl::StatusOr<UpstreamResponse> HttpSession::SendOnce(
    const UpstreamRequest& request, MonoTime deadline, Attempt& attempt) {
  const MonoTime start = clock_.Now();
  const nanoseconds remaining = deadline - start;
  if (remaining <= nanoseconds::zero()) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "%s: deadline passed before the request was sent", origin_.Key()));
  }
  // httplib's timeouts are per connect and per read/write; the receiver below
  // enforces the overall deadline while the body streams in.
  const auto budget =
      std::max(duration_cast<microseconds>(remaining), microseconds(1));
  const microseconds connect_budget =
      std::min(budget, duration_cast<microseconds>(options_.connect_timeout));
  client_->set_connection_timeout(connect_budget);
  client_->set_read_timeout(budget);
  client_->set_write_timeout(budget);

  httplib::Request req;
  req.method = request.method;
  req.path = request.target;
  for (const auto& [name, value] : request.headers) {
    req.headers.emplace(name, value);
  }
  req.headers.emplace("Host", request.origin.HostHeader());
  req.body = request.body;

  UpstreamResponse response;
  ExchangeFlags& flags = attempt.flags;
  req.response_handler = [&flags](const httplib::Response&) {
    flags.got_response = true;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t length, uint64_t,
                             uint64_t) {
    if (response.body.size() + length > options_.max_response_bytes) {
      flags.body_too_large = true;
      return false;
    }
    if (clock_.Now() >= deadline) {
      flags.timed_out = true;
      return false;
    }
    response.body.append(data, length);
    return true;
  };

  const int64_t opened_before = connections_opened_;
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  // Socket timeouts run on real time whatever clock_ is, so the time httplib
  // spent is measured on the steady clock to tell a timeout from a reset.
  const auto real_start = std::chrono::steady_clock::now();
  const bool ok = client_->send(req, res, error);
  const nanoseconds real_elapsed =
      std::chrono::steady_clock::now() - real_start;
  const bool opened = connections_opened_ != opened_before;
  attempt.reused = !opened && requests_served_ > 0;
  if (opened) observer_.OnConnectionOpened();
  if (attempt.reused) observer_.OnConnectionReused();

  if (flags.body_too_large) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: response body is over --max_response_bytes=%d",
                        origin_.Key(), options_.max_response_bytes));
  }
  // A socket timeout fires at the budget, give or take the kernel's timer
  // slack; a reset in the last 2% of the budget reads as a timeout, harmlessly.
  const auto near = [&](microseconds limit) {
    return real_elapsed + std::max<nanoseconds>(limit / 50,
                                                std::chrono::milliseconds(2)) >=
           limit;
  };
  const bool out_of_time = clock_.Now() >= deadline || near(budget);
  if (flags.timed_out ||
      (!ok && error != httplib::Error::Connection && out_of_time)) {
    return absl::DeadlineExceededError(
        absl::StrFormat("%s: no complete response within %.3fs", origin_.Key(),
                        Seconds(remaining)));
  }
  if (!ok) {
    switch (error) {
      case httplib::Error::Connection:
        if (near(connect_budget)) {
          return absl::DeadlineExceededError(
              absl::StrFormat("connect to %s timed out after %.3fs",
                              origin_.Key(), Seconds(connect_budget)));
        }
        return absl::UnavailableError(absl::StrFormat(
            "connect to %s failed: connection refused or unreachable",
            origin_.Key()));
      case httplib::Error::Write:
        return absl::UnavailableError(absl::StrFormat(
            "%s: connection closed or reset while sending the request",
            origin_.Key()));
      case httplib::Error::Read:
        return absl::UnavailableError(absl::StrFormat(
            "%s: connection closed, reset or malformed response while "
            "reading (%s)",
            origin_.Key(),
            flags.got_response ? "after the headers" : "before any response"));
      default:
        return absl::UnavailableError(
            absl::StrFormat("%s: upstream exchange failed: %s", origin_.Key(),
                            httplib::to_string(error)));
    }
  }

  response.status = res.status;
  response.headers.reserve(res.headers.size());
  for (const auto& [name, value] : res.headers) {
    if (!IsServiceOwnedHeader(name)) response.headers.emplace_back(name, value);
  }
  response.connection_reused = attempt.reused;
  return response;
}

}  // namespace egress
