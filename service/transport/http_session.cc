#include "service/transport/http_session.h"

#include <errno.h>
#include <fcntl.h>
#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "service/base/error_details.h"
#include "service/transport/address_order.h"
#include "service/transport/guarded_client.h"

namespace egress {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::nanoseconds;

// One call to httplib: what it observed, and why it failed.
struct HttpSession::Attempt {
  bool reused = false;
  AttemptFacts facts;
  UpstreamFailure failure = UpstreamFailure::kNone;
  // Through a proxy: its credentials for this attempt, the tunnel asked for
  // (https), and a 407 it answered in place of the origin (http).
  std::string proxy_authorization;
  std::optional<TunnelOutcome> tunnel;
  int proxy_status = 0;
};

std::string PoolKey(const std::string& origin_key,
                    const std::string& pool_tag) {
  return pool_tag.empty() ? origin_key
                          : absl::StrCat(origin_key, "#", pool_tag);
}

HttpSession::HttpSession(Origin origin, const SessionOptions& options,
                         const Clock& clock, SessionObserver& observer)
    : origin_(std::move(origin)),
      key_(origin_.Key()),
      options_(options),
      pool_key_(PoolKey(key_, options.pool_tag)),
      clock_(clock),
      observer_(observer),
      pinned_until_(clock.Now()),
      last_used_(clock.Now()) {
  if (options_.proxy != nullptr) {
    proxy_hop_ = {options_.proxy->host, options_.proxy->port};
  }
  if (origin_.scheme == "https") {
    client_ = NewTlsClient();
  } else {
    auto plain = std::make_unique<internal::GuardedClient<httplib::ClientImpl>>(
        *this, origin_.host, origin_.port);
    connection_ = plain.get();
    client_ = std::move(plain);
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
    OnSocket(sock);
  });
  observer_.OnSessionCreated();
}

HttpSession::~HttpSession() {
  // Through shutdown_ssl (SendCloseNotify): the client's own destructor would
  // wait for the upstream's close_notify.
  client_->stop();
  client_.reset();
}

bool HttpSession::IdleConnectionUsable() {
  const int fd = connection_->socket();
  if (fd < 0) return true;
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return true;  // nothing arrived while idle
  if ((p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) return false;
  char byte;
  const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return false;  // the upstream closed it
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  SSL* ssl = connection_->ssl();
  if (ssl == nullptr) return false;  // bytes nobody asked for
  // TLS: a record arrived. TLS 1.3 tickets and key updates come after the
  // handshake and are harmless; OpenSSL reads them without blocking here. A
  // close_notify, an alert or application data means the connection is done.
  const int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  ERR_clear_error();
  const int peeked = SSL_peek(ssl, &byte, 1);
  const int error = SSL_get_error(ssl, peeked);
  fcntl(fd, F_SETFL, flags);
  ERR_clear_error();
  return peeked <= 0 && error == SSL_ERROR_WANT_READ;
}

void HttpSession::OnSocket(int fd) {
  socket_opened_at_ = clock_.Now();
  handshake_started_at_ = MonoTime{};
  handshake_resumed_ = false;
  abort_.OnNewSocket(fd);
}

HttpSession::State HttpSession::state() const {
  if (abort_.in_exchange()) return State::kInExchange;
  if (consecutive_errors_ >= options_.max_errors) return State::kBroken;
  if (options_.max_requests > 0 && requests_served_ >= options_.max_requests) {
    return State::kExhausted;
  }
  return State::kReady;
}

ExchangeOutcome HttpSession::Exchange(const UpstreamRequest& request,
                                      const Deadline& deadline,
                                      ResponseSink& sink,
                                      ExchangeCanceller* canceller,
                                      std::chrono::nanoseconds idle_timeout) {
  abort_.Begin(canceller);
  const MonoTime start = clock_.Now();
  internal::BlockSigpipeOnThisThread();
  ExchangeOutcome outcome;
  absl::Status pinned = Pin(deadline);
  dns_time_ = clock_.Now() - start;
  if (!pinned.ok()) {
    outcome.status = std::move(pinned);
    outcome.failure = absl::IsPermissionDenied(outcome.status)
                          ? UpstreamFailure::kAbandoned
                          : UpstreamFailure::kOther;
  } else {
    Attempt attempt;
    outcome.status =
        SendTryingAddresses(request, deadline, idle_timeout, sink, attempt);
    outcome.failure = attempt.failure;
    outcome.reused = attempt.reused;
  }
  outcome.upstream_time = clock_.Now() - start;
  Count(outcome);
  abort_.End(canceller);
  return outcome;
}

void HttpSession::Count(const ExchangeOutcome& outcome) {
  last_used_ = clock_.Now();
  if (outcome.status.ok()) {
    consecutive_errors_ = 0;
    ++requests_served_;
    return;
  }
  // Not session errors: an exchange the sink or the caller abandoned (a body
  // over a limit, a caller gone: the connection was closed on purpose), a
  // refusal by policy (kAbandoned too: it says nothing of the upstream's
  // health), and a connection that may only have gone stale while idle. A
  // resend that fails on its fresh connection is one.
  if (IsSessionError(outcome.failure) && !outcome.stale()) {
    ++consecutive_errors_;
  }
}
std::string HttpSession::Describe() const {
  if (options_.proxy != nullptr) {
    return absl::StrCat(origin_.Key(), " via proxy ", options_.proxy->url);
  }
  if (pinned_address_.empty() || pinned_address_ == origin_.host) {
    return origin_.Key();
  }
  return absl::StrFormat("%s (%s)", origin_.Key(), pinned_address_);
}

absl::Status HttpSession::FailureOf(const Attempt& attempt, ResponseSink& sink,
                                    nanoseconds budget,
                                    nanoseconds connect_budget,
                                    nanoseconds idle_timeout) const {
  // Most exchanges succeed: no text is formed for them.
  if (attempt.failure == UpstreamFailure::kNone) return absl::OkStatus();
  FailureScene scene;
  scene.where = Describe();
  scene.origin = key_;
  scene.address = pinned_address_;
  scene.host = origin_.host;
  scene.budget = budget;
  scene.connect_budget = connect_budget;
  scene.idle_timeout = idle_timeout;
  if (attempt.failure == UpstreamFailure::kBadHead) {
    scene.head_error = exchange_.head_error;
  } else if (attempt.failure == UpstreamFailure::kAbandoned) {
    scene.abandon_status = sink.AbortStatus();
  }
  if (options_.proxy != nullptr) {
    scene.proxy = options_.proxy->url;
    scene.proxy_status = attempt.proxy_status;
    if (attempt.tunnel.has_value()) scene.proxy_detail = attempt.tunnel->detail;
  }
  return FailureStatus(attempt.failure, attempt.facts, scene);
}

absl::Status HttpSession::Pin(const Deadline& deadline) {
  // Through a proxy, an origin given as an address is still checked here:
  // the proxy would connect to it as it is. (A name is the proxy's to
  // resolve; docs/security.md.)
  in6_addr literal;
  if (options_.proxy != nullptr && options_.policy != nullptr &&
      ParseAddress(origin_.host, literal)) {
    absl::Status allowed = options_.policy->CheckAddress(origin_.host);
    if (!allowed.ok()) return allowed;
  }
  if (options_.dns == nullptr || clock_.Now() < pinned_until_) {
    return absl::OkStatus();
  }
  // Through a proxy, the session connects to the proxy, which resolves the
  // origin: the proxy's name is resolved here, and its addresses are the
  // operator's choice, not checked against the policy's CIDRs.
  const UpstreamProxy* proxy = options_.proxy.get();
  const std::string& host = proxy != nullptr ? proxy->host : origin_.host;
  absl::StatusOr<DnsCache::Answer> answer =
      options_.dns->Lookup(host, deadline);
  if (!answer.ok()) {
    if (proxy != nullptr) {
      return WithReason(absl::UnavailableError(absl::StrCat(
                            Describe(), ": upstream proxy ", proxy->url,
                            " failed: its name does not resolve: ",
                            answer.status().message())),
                        ErrorReason::kProxyConnectFailed,
                        {{"origin", origin_.Key()}, {"proxy", proxy->url}});
    }
    return WithReason(answer.status(), ErrorReason::kDnsFailed,
                      {{"host", origin_.host}, {"origin", origin_.Key()}});
  }
  // Each address checked is one the session may connect to, and it connects
  // to no other: a later DNS answer cannot slip past (no re-resolution in
  // between). A refused address is never tried.
  absl::StatusOr<std::vector<std::string>> allowed = ConnectOrder(
      answer->addresses, proxy != nullptr ? nullptr : options_.policy,
      pinned_address_);
  if (!allowed.ok()) return allowed.status();
  const bool moved =
      !pinned_address_.empty() && allowed->front() != pinned_address_;
  candidates_ = *std::move(allowed);
  UseAddress(0);
  // An open connection still goes to the old address: close it.
  if (moved) client_->stop();
  pinned_until_ = answer->expires;
  return absl::OkStatus();
}

void HttpSession::UseAddress(size_t i) {
  if (candidates_[i] == pinned_address_) return;
  pinned_address_ = candidates_[i];
  if (options_.proxy != nullptr) {
    proxy_hop_.first = pinned_address_;
  } else {
    client_->set_hostname_addr_map({{origin_.host, pinned_address_}});
  }
}

absl::Status HttpSession::SendTryingAddresses(
    const UpstreamRequest& request, const Deadline& deadline,
    std::chrono::nanoseconds idle_timeout, ResponseSink& sink,
    Attempt& attempt) {
  const size_t count = std::max<size_t>(candidates_.size(), 1);
  if (!candidates_.empty()) UseAddress(0);
  absl::Status status;
  size_t i = 0;
  for (;; ++i) {
    const bool last = i + 1 == count;
    const nanoseconds connect =
        last ? options_.connect_timeout
             : std::min<nanoseconds>(options_.connect_timeout,
                                     options_.connect_head_start);
    status = SendOnce(request, deadline, idle_timeout, connect, sink, attempt);
    if (!IsConnectFailure(attempt.failure) || last || deadline.Expired() ||
        abort_.abort_requested()) {
      break;
    }
    UseAddress(i + 1);
  }
  if (status.ok() && i > 0) {
    // Remember the address that worked: it is tried first from now on.
    std::rotate(candidates_.begin(), candidates_.begin() + i,
                candidates_.begin() + i + 1);
  } else if (IsConnectFailure(attempt.failure) && count > 1) {
    status = absl::Status(
        status.code(),
        absl::StrCat(status.message(), " (tried every address of \"",
                     origin_.host, "\": ", absl::StrJoin(candidates_, ", "),
                     ")"));
  }
  return status;
}

absl::Status HttpSession::SendOnce(const UpstreamRequest& request,
                                   const Deadline& deadline,
                                   std::chrono::nanoseconds idle_timeout,
                                   std::chrono::nanoseconds connect_timeout,
                                   ResponseSink& sink, Attempt& attempt) {
  attempt.facts = AttemptFacts{};
  attempt.failure = UpstreamFailure::kNone;
  const nanoseconds remaining = deadline.Remaining();
  if (remaining <= nanoseconds::zero()) {
    attempt.failure = UpstreamFailure::kDeadline;
    return WithReason(
        absl::DeadlineExceededError(absl::StrFormat(
            "%s: deadline passed before the request was sent", Describe())),
        ErrorReason::kDeadlineExceeded, {{"origin", origin_.Key()}});
  }
  if (abort_.abort_requested()) {
    attempt.failure = UpstreamFailure::kCancelled;
    return FailureOf(attempt, sink, remaining, connect_timeout, idle_timeout);
  }
  verify_result_ = X509_V_OK;
  // OpenSSL's error queue is per thread: only TLS leaves anything in it.
  if (origin_.scheme == "https") ERR_clear_error();
  const Deadline::Budget connect = deadline.Cap(connect_timeout);
  client_->set_connection_timeout(
      std::max(duration_cast<microseconds>(connect.time), microseconds(1)));
  // UpstreamStream enforces the deadline (and the idle timeout) before every
  // read and write; httplib's own per-operation timeouts are only a backstop,
  // for the TLS handshake and a TLS record that arrives in pieces.
  client_->set_read_timeout(deadline.RemainingMicros());
  client_->set_write_timeout(deadline.RemainingMicros());

  if (options_.proxy != nullptr) {
    absl::StatusOr<std::string> authorization = options_.proxy->Authorization();
    if (!authorization.ok()) {
      // Not the upstream's fault, and nothing was sent.
      attempt.failure = UpstreamFailure::kAbandoned;
      return WithReason(
          absl::FailedPreconditionError(absl::StrCat(
              Describe(), ": the credentials of upstream proxy ",
              options_.proxy->url,
              " cannot be read: ", authorization.status().message(),
              "; the upstream was not contacted")),
          ErrorReason::kCredentialUnavailable,
          {{"origin", origin_.Key()}, {"header", "Proxy-Authorization"}});
    }
    attempt.proxy_authorization = *std::move(authorization);
    attempt.tunnel.reset();
    attempt.proxy_status = 0;
  }
  const int64_t opened_before = connections_opened_;
  PrepareExchange(request, deadline, idle_timeout, sink, attempt);
  httplib::Request req = ToHttplibRequest(request, sink, attempt);
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  // The watchdog waits in real time for what is left of the deadline.
  abort_.BeginConnect(RealClock::Get().Now() + remaining);
  attempt_ = &attempt;
  const bool ok = client_->send(req, res, error);
  attempt_ = nullptr;
  abort_.EndConnect();
  // A socket counts as a connection (and, for https, a handshake) once it is
  // up: connects that failed over to another address are not.
  const bool new_socket = connections_opened_ != opened_before;
  attempt.reused = !new_socket && requests_served_ > 0;
  if (new_socket && exchange_.connected) {
    const bool tls = origin_.scheme == "https";
    observer_.OnConnectionOpened(key_, tls, tls && handshake_resumed_);
  }
  if (attempt.reused) observer_.OnConnectionReused(key_);
  // Bytes beyond the response: never read them as the next one.
  if (exchange_.leftover) client_->stop();

  const ExchangeAbort::Struck struck = abort_.struck();
  attempt.facts.watchdog_fired = struck.watchdog;
  attempt.facts.cancelled = struck.cancelled;
  attempt.facts.error = ok ? httplib::Error::Success : error;
  attempt.facts.stream = exchange_.failure;
  attempt.facts.connect_cut_by_deadline = connect.cut_by_deadline;
  attempt.facts.verify_result = verify_result_;
  // A response that arrived whole stands, whatever happened after it.
  attempt.failure = ok && !attempt.facts.sink_aborted
                        ? UpstreamFailure::kNone
                        : ClassifyFailure(attempt.facts);
  if (options_.proxy != nullptr) ClassifyProxyFailure(attempt);
  return FailureOf(attempt, sink, remaining, connect.time, idle_timeout);
}

void HttpSession::ClassifyProxyFailure(Attempt& attempt) const {
  switch (attempt.failure) {
    case UpstreamFailure::kNone:
    case UpstreamFailure::kCancelled:
    case UpstreamFailure::kDeadline:
    case UpstreamFailure::kConnectDeadline:
      return;  // the call's own ending, whoever was slow
    default:
      break;
  }
  if (attempt.proxy_status != 0) {  // a 407 in place of the origin's answer
    attempt.failure = UpstreamFailure::kProxyRefused;
  } else if (attempt.tunnel.has_value()) {
    switch (attempt.tunnel->result) {
      case TunnelOutcome::Result::kRefused:
        attempt.proxy_status = attempt.tunnel->proxy_status;
        attempt.failure = UpstreamFailure::kProxyRefused;
        break;
      case TunnelOutcome::Result::kFailed:
        attempt.failure = UpstreamFailure::kProxyConnectFailed;
        break;
      case TunnelOutcome::Result::kOpen:
        break;  // what failed was inside the tunnel: the origin's
    }
  } else if (attempt.failure == UpstreamFailure::kConnectRefused ||
             attempt.failure == UpstreamFailure::kConnectTimeout) {
    // The connection that could not be made was the proxy's.
    attempt.failure = UpstreamFailure::kProxyConnectFailed;
  }
}

bool HttpSession::OpenProxyTunnel(int fd) {
  if (attempt_ == nullptr) return false;
  const std::string host = absl::StrContains(origin_.host, ':')
                               ? absl::StrCat("[", origin_.host, "]")
                               : origin_.host;
  attempt_->tunnel = OpenTunnel(fd, absl::StrCat(host, ":", origin_.port),
                                attempt_->proxy_authorization,
                                options_.head_limits, exchange_.deadline);
  return attempt_->tunnel->result == TunnelOutcome::Result::kOpen;
}

void HttpSession::PrepareExchange(const UpstreamRequest& request,
                                  const Deadline& deadline,
                                  std::chrono::nanoseconds idle_timeout,
                                  ResponseSink& sink, Attempt& attempt) {
  const MonoTime start = clock_.Now();
  const int64_t opened_before = connections_opened_;
  exchange_ = UpstreamExchange{};
  exchange_.deadline = deadline;
  exchange_.idle_timeout = idle_timeout;
  exchange_.limits = options_.head_limits;
  exchange_.head_request = request.method == "HEAD";
  exchange_.on_head = [this, start, opened_before, &sink,
                       &attempt](const ResponseHead& received) {
    attempt.facts.got_response = true;
    // A plain-http request through a proxy that wants credentials: the
    // proxy's refusal, not the origin's answer.
    if (received.status == 407 && options_.proxy != nullptr &&
        origin_.scheme == "http") {
      attempt.proxy_status = received.status;
      return false;
    }
    UpstreamHead head;
    head.status = received.status;
    head.headers.reserve(received.headers.size());
    for (const auto& [name, value] : received.headers) {
      if (!IsServiceOwnedHeader(name)) head.headers.emplace_back(name, value);
    }
    const MonoTime now = clock_.Now();
    const bool new_socket = connections_opened_ != opened_before;
    head.connection_reused = !new_socket && requests_served_ > 0;
    head.attempts = 1;
    head.upstream_time = now - start;
    head.dns_time = dns_time_;
    if (new_socket && exchange_.ready_at >= socket_opened_at_) {
      const bool tls = handshake_started_at_ >= socket_opened_at_;
      const MonoTime connected =
          tls ? handshake_started_at_ : exchange_.ready_at;
      head.connect_time = connected - socket_opened_at_;
      if (tls) head.tls_time = exchange_.ready_at - handshake_started_at_;
    }
    head.first_byte_time = dns_time_ + (now - start);
    head.remote_address =
        pinned_address_.empty() ? origin_.host : pinned_address_;
    head.remote_port = origin_.port;
    const std::optional<uint64_t> body_length =
        received.framing == BodyFraming::kContentLength
            ? std::optional<uint64_t>(received.content_length)
            : std::nullopt;
    if (!sink.OnHead(std::move(head), body_length)) {
      attempt.facts.sink_aborted = true;
      return false;
    }
    return true;
  };
}

httplib::Request HttpSession::ToHttplibRequest(const UpstreamRequest& request,
                                               ResponseSink& sink,
                                               Attempt& attempt) const {
  httplib::Request req;
  req.method = request.method;
  req.path = request.target;
  for (const auto& [name, value] : request.headers) {
    req.headers.emplace(name, value);
  }
  req.headers.emplace("Host", request.origin.HostHeader());
  if (options_.proxy != nullptr && origin_.scheme == "http") {
    // To a proxy, a request names its origin (absolute form, RFC 9112 3.2.2).
    req.path =
        absl::StrCat("http://", request.origin.HostHeader(), request.target);
    if (!attempt.proxy_authorization.empty()) {
      req.headers.emplace("Proxy-Authorization", attempt.proxy_authorization);
    }
  }
  // The body is read where it is, once per attempt, instead of copied into
  // req.body: httplib writes a provider's bytes straight to the socket.
  if (!request.body.empty()) {
    const std::string* body = &request.body;
    req.content_length_ = body->size();
    req.content_provider_ = [body](size_t offset, size_t length,
                                   httplib::DataSink& sink) {
      // A failed write is httplib's to report (Error::Write); returning false
      // here would read as a cancellation.
      sink.write(body->data() + offset,
                 std::min(length, body->size() - offset));
      return true;
    };
  }
  req.content_receiver = [&sink, &attempt](const char* data, size_t length,
                                           uint64_t, uint64_t) {
    if (!sink.OnBody(data, length)) {
      attempt.facts.sink_aborted = true;
      return false;
    }
    return true;
  };
  return req;
}

}  // namespace egress
