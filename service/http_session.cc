#include "service/http_session.h"

#include <httplib.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

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

// Do's sink: keeps the whole response, up to max_response_bytes.
class BufferSink final : public ResponseSink {
 public:
  BufferSink(size_t max_bytes, std::string origin)
      : max_bytes_(max_bytes), origin_(std::move(origin)) {}

  bool OnHead(UpstreamResponse head) override {
    response_ = std::move(head);
    return true;
  }
  bool OnBody(const char* data, size_t size) override {
    if (response_.body.size() + size > max_bytes_) return false;
    response_.body.append(data, size);
    return true;
  }
  absl::Status AbortStatus() const override {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: response body is over --max_response_bytes=%d",
                        origin_, max_bytes_));
  }
  UpstreamResponse& response() { return response_; }

 private:
  const size_t max_bytes_;
  const std::string origin_;
  UpstreamResponse response_;
};

// SSL_CTX ex_data slot holding the owning session's `long` verify result.
int VerifyResultIndex() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Records the first verification failure of a handshake where
// TransportError can read it, and lets OpenSSL fail the handshake.
int RecordVerifyResult(int ok, X509_STORE_CTX* store_ctx) {
  if (ok == 0) {
    SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(
        store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
    auto* result = static_cast<long*>(
        SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), VerifyResultIndex()));
    if (result != nullptr && *result == X509_V_OK) {
      *result = X509_STORE_CTX_get_error(store_ctx);
    }
  }
  return ok;
}

}  // namespace

// What one call to httplib observed, beyond its Error code.
struct HttpSession::Attempt {
  int number = 1;
  bool reused = false;
  bool got_response = false;  // the status line and headers arrived
  bool sink_aborted = false;  // the sink said stop
  bool timed_out = false;     // we stopped reading: deadline passed
};

HttpSession::HttpSession(Origin origin, const SessionOptions& options,
                         const Clock& clock, SessionObserver& observer)
    : origin_(std::move(origin)),
      options_(options),
      clock_(clock),
      observer_(observer),
      pinned_until_(clock.Now()),
      last_used_(clock.Now()) {
  if (origin_.scheme == "https") {
    auto ssl = std::make_unique<httplib::SSLClient>(origin_.host, origin_.port);
    // OpenSSL verifies the chain and the host name during the handshake, not
    // httplib after it: httplib's verification reloads the system roots into
    // the context on every new client (tens of ms of CPU per session, and a
    // write to the shared store from several workers at once).
    ssl->enable_server_certificate_verification(false);
    if (options_.verify_tls) ConfigureVerification(ssl->ssl_context());
    client_ = std::move(ssl);
  } else {
    client_ = std::make_unique<httplib::ClientImpl>(origin_.host, origin_.port);
  }
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

void HttpSession::ConfigureVerification(SSL_CTX* ctx) {
  if (options_.trust_store != nullptr) {
    X509_STORE_up_ref(options_.trust_store);  // the context owns a reference
    SSL_CTX_set_cert_store(ctx, options_.trust_store);
  } else {
    SSL_CTX_set_default_verify_paths(ctx);
  }
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (IsIpLiteral(origin_.host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, origin_.host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, origin_.host.c_str(), 0);
  }
  SSL_CTX_set_ex_data(ctx, VerifyResultIndex(), &verify_result_);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, RecordVerifyResult);
}

absl::StatusOr<UpstreamResponse> HttpSession::Send(
    const UpstreamRequest& request, MonoTime deadline) {
  BufferSink buffer(options_.max_response_bytes, Describe());
  absl::StatusOr<UpstreamResponse> result =
      Exchange(request, deadline, std::chrono::nanoseconds::max(), buffer);
  if (!result.ok()) return result;
  UpstreamResponse& response = buffer.response();
  response.attempts = result->attempts;
  response.upstream_time = result->upstream_time;
  return std::move(response);
}

absl::StatusOr<UpstreamResponse> HttpSession::Stream(
    const UpstreamRequest& request, MonoTime deadline,
    std::chrono::nanoseconds idle_timeout, ResponseSink& sink) {
  return Exchange(request, deadline, idle_timeout, sink);
}

void HttpSession::Abort() {
  aborted_ = true;
  client_->stop();  // httplib: shuts the socket down under its own lock
}

absl::StatusOr<UpstreamResponse> HttpSession::Exchange(
    const UpstreamRequest& request, MonoTime deadline,
    std::chrono::nanoseconds idle_timeout, ResponseSink& sink) {
  const MonoTime start = clock_.Now();
  absl::Status pinned = Pin();
  if (!pinned.ok()) {
    last_used_ = start;
    // A refusal by policy says nothing about the upstream's health.
    if (!absl::IsPermissionDenied(pinned)) ++consecutive_errors_;
    return pinned;
  }
  Attempt first;
  absl::Status status = SendOnce(request, deadline, idle_timeout, sink, first);
  Attempt* last = &first;
  Attempt second;
  second.number = 2;
  // A keep-alive connection the upstream closed while it sat idle fails before
  // any response byte; resending is safe only when the request is idempotent.
  const bool stale = !status.ok() && first.reused && !first.got_response &&
                     !first.timed_out && !first.sink_aborted &&
                     absl::IsUnavailable(status);
  if (stale) {
    const bool safe =
        IsIdempotentMethod(request.method) ||
        std::any_of(request.headers.begin(), request.headers.end(),
                    [](const auto& h) {
                      return absl::EqualsIgnoreCase(h.first, "Idempotency-Key");
                    });
    if (safe && clock_.Now() < deadline && !aborted_) {
      observer_.OnStaleRetry();
      status = SendOnce(request, deadline, idle_timeout, sink, second);
      last = &second;
    } else if (!safe) {
      status = absl::UnavailableError(absl::StrFormat(
          "%s: reused connection failed (%s); the request may not have been "
          "delivered and %s is not idempotent, so it was not retried",
          Describe(), status.message(), request.method));
    }
  }
  last_used_ = clock_.Now();
  const bool aborted = aborted_.exchange(false);
  if (status.ok()) {
    consecutive_errors_ = 0;
    ++requests_served_;
    UpstreamResponse summary;
    summary.connection_reused = last->reused;
    summary.attempts = last->number;
    summary.upstream_time = last_used_ - start;
    return summary;
  }
  if (aborted && !last->sink_aborted) {
    status = absl::CancelledError(absl::StrFormat(
        "%s: exchange abandoned: the caller went away", Describe()));
  }
  // Not session errors: an exchange the sink or the caller abandoned (a body
  // over a limit, a caller gone: the connection was closed on purpose) and a
  // stale connection that was not retried. A retry that failed on its fresh
  // connection is one.
  const bool stale_not_retried = stale && last == &first;
  if (!last->sink_aborted && !aborted && !stale_not_retried) {
    ++consecutive_errors_;
  }
  return status;
}

std::string HttpSession::Describe() const {
  if (pinned_address_.empty() || pinned_address_ == origin_.host) {
    return origin_.Key();
  }
  return absl::StrFormat("%s (%s)", origin_.Key(), pinned_address_);
}

absl::Status HttpSession::Timeout(nanoseconds budget) const {
  return absl::DeadlineExceededError(absl::StrFormat(
      "%s: no complete response within %.3fs", Describe(), Seconds(budget)));
}

absl::Status HttpSession::ConnectTimeout(microseconds budget) const {
  const std::string message =
      absl::StrFormat("connect to %s timed out after %.3fs", Describe(),
                      Seconds(duration_cast<nanoseconds>(budget)));
  // The upstream did not answer within --connect_timeout: it is unreachable,
  // and the caller, whose deadline has time left, may try again. Only when the
  // call's own deadline cut the connect short is it DEADLINE_EXCEEDED.
  if (budget < duration_cast<microseconds>(options_.connect_timeout)) {
    return absl::DeadlineExceededError(message);
  }
  return absl::UnavailableError(message);
}

absl::Status HttpSession::TransportError(httplib::Error error,
                                         bool got_response) const {
  switch (error) {
    case httplib::Error::Write:
      return absl::UnavailableError(absl::StrFormat(
          "%s: connection closed or reset while sending the request",
          Describe()));
    case httplib::Error::Read:
      return absl::UnavailableError(absl::StrFormat(
          "%s: connection closed or reset, or a malformed response, %s",
          Describe(),
          got_response ? "in the middle of the body" : "before any response"));
    case httplib::Error::SSLConnection:
      if (verify_result_ == X509_V_ERR_HOSTNAME_MISMATCH ||
          verify_result_ == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        return absl::UnavailableError(absl::StrFormat(
            "%s: certificate verify failed: the certificate does not match "
            "host name \"%s\"",
            Describe(), origin_.host));
      }
      if (verify_result_ != X509_V_OK) {
        return absl::UnavailableError(
            absl::StrFormat("%s: certificate verify failed: %s", Describe(),
                            X509_verify_cert_error_string(verify_result_)));
      }
      return absl::UnavailableError(
          absl::StrFormat("%s: TLS handshake failed", Describe()));
    default:
      return absl::UnavailableError(
          absl::StrFormat("%s: upstream exchange failed: %s", Describe(),
                          httplib::to_string(error)));
  }
}

absl::Status HttpSession::Pin() {
  if (options_.dns == nullptr || clock_.Now() < pinned_until_) {
    return absl::OkStatus();
  }
  absl::StatusOr<DnsCache::Answer> answer = options_.dns->Lookup(origin_.host);
  if (!answer.ok()) return answer.status();
  // The address checked is the address pinned, and so the one connected to: a
  // later DNS answer cannot slip past (no re-resolution in between).
  if (options_.policy != nullptr) {
    absl::Status allowed = options_.policy->CheckAddress(answer->address);
    if (!allowed.ok()) return allowed;
  }
  if (answer->address != pinned_address_) {
    const bool moved = !pinned_address_.empty();
    pinned_address_ = answer->address;
    client_->set_hostname_addr_map({{origin_.host, pinned_address_}});
    // An open connection still goes to the old address: close it.
    if (moved) client_->stop();
  }
  pinned_until_ = answer->expires;
  return absl::OkStatus();
}

absl::Status HttpSession::SendOnce(const UpstreamRequest& request,
                                   MonoTime deadline,
                                   std::chrono::nanoseconds idle_timeout,
                                   ResponseSink& sink, Attempt& attempt) {
  const MonoTime start = clock_.Now();
  const nanoseconds remaining = deadline - start;
  if (remaining <= nanoseconds::zero()) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "%s: deadline passed before the request was sent", Describe()));
  }
  if (aborted_) return absl::CancelledError("exchange abandoned");
  verify_result_ = X509_V_OK;
  // httplib's timeouts are per connect and per read/write; the receiver below
  // enforces the overall deadline while the body streams in.
  const auto budget =
      std::max(duration_cast<microseconds>(remaining), microseconds(1));
  const microseconds connect_budget =
      std::min(budget, duration_cast<microseconds>(options_.connect_timeout));
  const microseconds read_budget =
      idle_timeout < remaining
          ? std::max(duration_cast<microseconds>(idle_timeout), microseconds(1))
          : budget;
  client_->set_connection_timeout(connect_budget);
  client_->set_read_timeout(read_budget);
  client_->set_write_timeout(budget);

  httplib::Request req;
  req.method = request.method;
  req.path = request.target;
  for (const auto& [name, value] : request.headers) {
    req.headers.emplace(name, value);
  }
  req.headers.emplace("Host", request.origin.HostHeader());
  req.body = request.body;

  const int64_t opened_before = connections_opened_;
  req.response_handler = [&](const httplib::Response& res) {
    attempt.got_response = true;
    UpstreamResponse head;
    head.status = res.status;
    head.headers.reserve(res.headers.size());
    for (const auto& [name, value] : res.headers) {
      if (!IsServiceOwnedHeader(name)) head.headers.emplace_back(name, value);
    }
    head.connection_reused =
        connections_opened_ == opened_before && requests_served_ > 0;
    head.attempts = attempt.number;
    head.upstream_time = clock_.Now() - start;
    if (!sink.OnHead(std::move(head))) {
      attempt.sink_aborted = true;
      return false;
    }
    return true;
  };
  req.content_receiver = [&](const char* data, size_t length, uint64_t,
                             uint64_t) {
    if (clock_.Now() >= deadline) {
      attempt.timed_out = true;
      return false;
    }
    if (!sink.OnBody(data, length)) {
      attempt.sink_aborted = true;
      return false;
    }
    return true;
  };

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
  if (opened) observer_.OnConnectionOpened(origin_.scheme == "https");
  if (attempt.reused) observer_.OnConnectionReused();

  if (attempt.sink_aborted) return sink.AbortStatus();
  if (attempt.timed_out) return Timeout(remaining);
  if (ok) return absl::OkStatus();
  // A socket timeout fires at its budget, give or take the kernel's timer
  // slack; a reset in the last 2% of a budget reads as a timeout, harmlessly.
  const auto near = [&](microseconds limit) {
    return real_elapsed + std::max<nanoseconds>(limit / 50,
                                                std::chrono::milliseconds(2)) >=
           limit;
  };
  switch (error) {
    case httplib::Error::ConnectionTimeout:
      return ConnectTimeout(connect_budget);
    case httplib::Error::Connection:
      if (near(connect_budget)) return ConnectTimeout(connect_budget);
      return absl::UnavailableError(absl::StrFormat(
          "connect to %s failed: connection refused or unreachable",
          Describe()));
    default:
      if (clock_.Now() >= deadline || near(budget)) return Timeout(remaining);
      if (read_budget < budget && near(read_budget)) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "%s: no data from the upstream for %.3fs (--stream_idle_timeout)",
            Describe(), Seconds(duration_cast<nanoseconds>(read_budget))));
      }
      return TransportError(error, attempt.got_response);
  }
}

}  // namespace egress
