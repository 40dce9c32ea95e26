#include "service/http_session.h"

#include <errno.h>
#include <fcntl.h>
#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <thread>
#include <type_traits>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "service/address_order.h"
#include "service/error_details.h"
#include "service/tls_trust.h"

namespace egress {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::nanoseconds;

// SSL_CTX ex_data slot holding the HttpSession that owns the context.
int SessionIndex() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Do's sink: keeps the whole response, up to max_response_bytes. Every byte
// of the body's buffer is reserved from the call's BudgetLease (when it has
// one) before it is allocated: the whole body at once when the head frames it
// by Content-Length, else as the buffer grows.
class BufferSink final : public ResponseSink {
 public:
  BufferSink(size_t max_bytes, std::string origin, BudgetLease* budget)
      : max_bytes_(max_bytes), origin_(std::move(origin)), budget_(budget) {}

  bool OnHead(UpstreamResponse head,
              std::optional<uint64_t> body_length) override {
    response_ = std::move(head);
    if (body_length.has_value() && *body_length <= max_bytes_) {
      return Reserve(static_cast<size_t>(*body_length));
    }
    return true;
  }
  bool OnBody(const char* data, size_t size) override {
    std::string& body = response_.body;
    if (body.size() + size > max_bytes_) {
      abort_ = WithReason(
          absl::ResourceExhaustedError(absl::StrFormat(
              "%s: response body is over --max_response_bytes=%d", origin_,
              max_bytes_)),
          ErrorReason::kResponseTooLarge,
          {{"origin", origin_},
           {"limit", absl::StrCat("--max_response_bytes=", max_bytes_)}});
      return false;
    }
    // std::string at least doubles its buffer when it grows.
    if (body.size() + size > body.capacity() &&
        !Reserve(std::min(max_bytes_,
                          std::max(body.size() + size, 2 * body.capacity())))) {
      return false;
    }
    body.append(data, size);
    return true;
  }
  absl::Status AbortStatus() const override { return abort_; }
  UpstreamResponse& response() { return response_; }

 private:
  // Grows the body's buffer to `capacity`, reserved from the budget first.
  bool Reserve(size_t capacity) {
    std::string& body = response_.body;
    if (capacity <= body.capacity()) return true;
    const size_t more = capacity - body.capacity();
    if (budget_ != nullptr && !budget_->Grow(more)) {
      abort_ = budget_->budget()->Exhausted(
          absl::StrCat(origin_, ": response body").c_str(), more);
      return false;
    }
    body.reserve(capacity);
    return true;
  }

  const size_t max_bytes_;
  const std::string origin_;
  BudgetLease* const budget_;
  UpstreamResponse response_;
  absl::Status abort_ = absl::ResourceExhaustedError("response refused");
};

// OpenSSL writes to its socket with write(2), which raises SIGPIPE when the
// upstream has closed the connection (httplib's own writes use MSG_NOSIGNAL).
// The signal is blocked, once, on each thread that sends through a session, so
// that such a write fails with EPIPE instead of ending the process.
void BlockSigpipeOnThisThread() {
  static thread_local const bool blocked = [] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    return pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
  }();
  (void)blocked;
}

}  // namespace

namespace internal {

// Aborts connects and TLS handshakes that outlive their exchange's deadline.
// httplib bounds each step of them, and each wait restarts when a byte
// arrives, so an upstream that drips its handshake could hold a worker far
// past the deadline; UpstreamStream enforces it only once the connection is
// up. Only new connections are watched, so a reused one costs nothing here.
//
// Thread safety: thread-safe. Unwatch returns only when the entry can no
// longer be acted on, so a session may be destroyed right after.
class ConnectWatchdog {
 public:
  static ConnectWatchdog& Get() {
    static ConnectWatchdog* const watchdog = new ConnectWatchdog();
    return *watchdog;
  }

  // `deadline` is in real time (RealClock): the watchdog waits for it.
  uint64_t Watch(HttpSession* session, MonoTime deadline) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t id = ++last_id_;
    entries_.emplace(std::make_pair(deadline, id), session);
    wake_.notify_one();
    return id;
  }

  void Unwatch(uint64_t id, MonoTime deadline) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.erase(std::make_pair(deadline, id));
  }

 private:
  ConnectWatchdog() {
    std::thread([this] { Run(); }).detach();
  }

  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (entries_.empty()) {
        wake_.wait(lock);
        continue;
      }
      auto first = entries_.begin();
      // A copy: the entry may be erased while this thread waits.
      const MonoTime when = first->first.first;
      const MonoTime now = RealClock::Get().Now();
      if (when > now) {
        wake_.wait_for(lock, when - now);
        continue;
      }
      // Under mu_: Unwatch cannot return, nor the session go, meanwhile.
      first->second->AbortAtDeadline();
      entries_.erase(first);
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;
  uint64_t last_id_ = 0;  // guarded by mu_
  std::map<std::pair<MonoTime, uint64_t>, HttpSession*>
      entries_;  // guarded by mu_
};

// An httplib client, plain (ClientImpl) or TLS (SSLClient), whose every
// exchange runs over an UpstreamStream bound to the session's exchange, and
// which tells the session when its connection is up for an exchange and
// before httplib closes it (for Abort), and prepares each TLS handshake.
template <class Base>
class GuardedClient final : public Base, public ConnectionView {
 public:
  template <class... Args>
  explicit GuardedClient(HttpSession& session, Args&&... args)
      : Base(std::forward<Args>(args)...), session_(session) {}

  int socket() const override {
    return this->socket_.is_open() ? static_cast<int>(this->socket_.sock) : -1;
  }
  SSL* ssl() const override {
    if constexpr (std::is_same_v<Base, httplib::SSLClient>) {
      return this->socket_.ssl;
    }
    return nullptr;
  }

 private:
  bool process_socket(const typename Base::Socket& socket,
                      std::function<bool(httplib::Stream&)> callback) override {
    UpstreamExchange& exchange = session_.exchange_;
    // The connection is up, and httplib closes it only on this thread, after
    // shutdown_ssl: Abort may shut this very socket down until then.
    session_.OnExchangeSocket(static_cast<int>(socket.sock));
    const bool result =
        Base::process_socket(socket, [&](httplib::Stream& inner) {
          exchange.ready_at = exchange.deadline.clock().Now();
          UpstreamStream stream(inner, socket.sock, socket.ssl, exchange,
                                buffer_);
          const bool ok = callback(stream);
          // More than the response framed (or bytes nobody asked for): whatever
          // they are, they must not be read as the next response. (`socket` is
          // the client's own: httplib may have closed it already, for
          // "Connection: close" or HTTP/1.0, and then there is nothing to
          // keep.)
          if (ok && socket.is_open() && stream.HasUnreadBytes()) {
            exchange.leftover = true;
          }
          return ok;
        });
    session_.OnSocketClosing();
    return result;
  }

  // httplib calls this before each close of the client's socket.
  void shutdown_ssl(typename Base::Socket& socket,
                    bool shutdown_gracefully) override {
    session_.OnSocketClosing();
    if constexpr (std::is_same_v<Base, httplib::SSLClient>) {
      if (shutdown_gracefully && socket.ssl != nullptr) {
        SendCloseNotify(socket);
        shutdown_gracefully = false;  // sent: nothing more to wait for
      }
    }
    Base::shutdown_ssl(socket, shutdown_gracefully);
  }

  // Sends TLS's close_notify once, without blocking and without waiting for
  // the upstream's: httplib's graceful shutdown waits for the reply, sleeping
  // 100 ms per try, for up to a second, on whichever thread closes the
  // connection (a worker answering a call, the pool's janitor).
  static void SendCloseNotify(typename Base::Socket& socket) {
    BlockSigpipeOnThisThread();
    const int flags = fcntl(socket.sock, F_GETFL);
    fcntl(socket.sock, F_SETFL, flags | O_NONBLOCK);
    SSL_shutdown(socket.ssl);  // a peer that is gone is no error here
    ERR_clear_error();
    fcntl(socket.sock, F_SETFL, flags);
  }

  void prepare_ssl(SSL* ssl) {
    if constexpr (std::is_same_v<Base, httplib::SSLClient>) {
      session_.PrepareTls(ssl);
    }
  }

  HttpSession& session_;
  std::string buffer_;  // UpstreamStream's, kept between exchanges
};

}  // namespace internal

// One call to httplib: what it observed, and why it failed.
struct HttpSession::Attempt {
  int number = 1;
  bool reused = false;
  AttemptFacts facts;
  UpstreamFailure failure = UpstreamFailure::kNone;
};

void ExchangeCanceller::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (session_ != nullptr) session_->Abort();
  cancelled_cv_.notify_all();
}

bool ExchangeCanceller::WaitFor(std::chrono::nanoseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cancelled_cv_.wait_for(lock, d, [this] { return cancelled_; });
}

bool ExchangeCanceller::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

void ExchangeCanceller::Attach(HttpSession* session) {
  std::lock_guard<std::mutex> lock(mu_);
  session_ = session;
  if (cancelled_) session_->Abort();
}

void ExchangeCanceller::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  session_ = nullptr;
}

HttpSession::HttpSession(Origin origin, const SessionOptions& options,
                         const Clock& clock, SessionObserver& observer)
    : origin_(std::move(origin)),
      key_(origin_.Key()),
      options_(options),
      clock_(clock),
      observer_(observer),
      pinned_until_(clock.Now()),
      last_used_(clock.Now()) {
  if (origin_.scheme == "https") {
    auto ssl = std::make_unique<internal::GuardedClient<httplib::SSLClient>>(
        *this, origin_.host, origin_.port);
    // OpenSSL verifies the chain and the host name during the handshake, not
    // httplib after it: httplib's verification reloads the system roots into
    // the context on every new client (tens of ms of CPU per session, and a
    // write to the shared store from several workers at once).
    ssl->enable_server_certificate_verification(false);
    SSL_CTX_set_min_proto_version(ssl->ssl_context(), options_.tls_min_version);
    if (options_.verify_tls) {
      VerifyDuringHandshake(ssl->ssl_context(), options_.trust_store,
                            origin_.host, &verify_result_);
    }
    SSL_CTX_set_ex_data(ssl->ssl_context(), SessionIndex(), this);
    SSL_CTX_set_info_callback(ssl->ssl_context(), &HttpSession::OnTlsInfo);
    if (options_.tls_sessions != nullptr) {
      // The client side of OpenSSL's cache only hands each new session to
      // OnNewTlsSession; the store keeps them, for every session of the origin.
      SSL_CTX_set_session_cache_mode(
          ssl->ssl_context(),
          SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(ssl->ssl_context(),
                              &HttpSession::OnNewTlsSession);
    }
    connection_ = ssl.get();
    client_ = std::move(ssl);
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
  if (abort_fd_owned_) close(abort_fd_);
}

namespace {

HttpSession* SessionOf(const SSL* ssl) {
  return static_cast<HttpSession*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), SessionIndex()));
}

}  // namespace

void HttpSession::OnTlsInfo(const SSL* ssl, int where, int) {
  HttpSession* session = SessionOf(ssl);
  if (session == nullptr) return;
  if ((where & SSL_CB_HANDSHAKE_START) != 0) {
    session->handshake_started_at_ = session->clock_.Now();
  }
  if ((where & SSL_CB_HANDSHAKE_DONE) != 0) {
    session->handshake_resumed_ = SSL_session_reused(ssl) == 1;
  }
}

int HttpSession::OnNewTlsSession(SSL* ssl, SSL_SESSION* tls_session) {
  HttpSession* session = SessionOf(ssl);
  if (session == nullptr || session->options_.tls_sessions == nullptr) {
    return 0;  // OpenSSL keeps its reference
  }
  session->options_.tls_sessions->Save(session->key_, tls_session);
  return 1;  // the store took the reference
}

void HttpSession::PrepareTls(SSL* ssl) {
  handshake_resumed_ = false;
  if (options_.tls_sessions == nullptr) return;
  SSL_SESSION* saved = options_.tls_sessions->Take(key_);
  if (saved == nullptr) return;
  SSL_set_session(ssl, saved);  // takes its own reference
  SSL_SESSION_free(saved);
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
  {
    std::lock_guard<std::mutex> lock(abort_mu_);
    if (abort_fd_owned_) close(abort_fd_);
    abort_fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    abort_fd_owned_ = abort_fd_ >= 0;
    if (abort_requested_ && abort_fd_ >= 0) shutdown(abort_fd_, SHUT_RDWR);
  }
  // Not under abort_mu_: the watchdog takes its own lock, then abort_mu_.
  if (watch_ == 0) {
    watch_ = internal::ConnectWatchdog::Get().Watch(this, connect_deadline_);
  }
}

void HttpSession::OnExchangeSocket(int fd) {
  std::lock_guard<std::mutex> lock(abort_mu_);
  if (abort_fd_owned_) close(abort_fd_);
  abort_fd_ = fd;
  abort_fd_owned_ = false;
  if (abort_requested_ || deadline_abort_) shutdown(fd, SHUT_RDWR);
}

void HttpSession::OnSocketClosing() {
  std::lock_guard<std::mutex> lock(abort_mu_);
  if (abort_fd_owned_) return;  // a duplicate: the session closes it
  abort_fd_ = -1;
}

void HttpSession::AbortAtDeadline() {
  std::lock_guard<std::mutex> lock(abort_mu_);
  if (!in_exchange_) return;
  deadline_abort_ = true;
  if (abort_fd_ >= 0) shutdown(abort_fd_, SHUT_RDWR);
}

void HttpSession::BeginExchange(ExchangeCanceller* canceller) {
  {
    std::lock_guard<std::mutex> lock(abort_mu_);
    in_exchange_ = true;
    abort_requested_ = false;
    deadline_abort_ = false;
  }
  // Once in the exchange, so that a cancel made before it aborts it at once.
  if (canceller != nullptr) canceller->Attach(this);
}

void HttpSession::EndExchange(ExchangeCanceller* canceller) {
  // Before the exchange ends, so that the canceller never reaches the next.
  if (canceller != nullptr) canceller->Detach();
  std::lock_guard<std::mutex> lock(abort_mu_);
  in_exchange_ = false;
  abort_requested_ = false;
  deadline_abort_ = false;
  // Between exchanges nothing is aborted: no descriptor is kept for it.
  if (abort_fd_owned_) close(abort_fd_);
  abort_fd_ = -1;
  abort_fd_owned_ = false;
}

HttpSession::State HttpSession::state() const {
  // in_exchange_ is written only by the owner, the one caller of state(), so
  // reading it here needs no lock.
  if (in_exchange_) return State::kInExchange;
  if (consecutive_errors_ >= options_.max_errors) return State::kBroken;
  if (options_.max_requests > 0 && requests_served_ >= options_.max_requests) {
    return State::kExhausted;
  }
  return State::kReady;
}

bool HttpSession::AbortRequested() {
  std::lock_guard<std::mutex> lock(abort_mu_);
  return abort_requested_;
}

void HttpSession::Abort() {
  std::lock_guard<std::mutex> lock(abort_mu_);
  if (!in_exchange_) return;
  abort_requested_ = true;
  if (abort_fd_ >= 0) shutdown(abort_fd_, SHUT_RDWR);
}

absl::StatusOr<UpstreamResponse> HttpSession::Send(
    const UpstreamRequest& request, const Deadline& deadline,
    ExchangeCanceller* canceller, BudgetLease* budget) {
  BeginExchange(canceller);
  absl::Cleanup end_exchange = [this, canceller] { EndExchange(canceller); };
  BufferSink buffer(options_.max_response_bytes, Describe(), budget);
  absl::StatusOr<UpstreamResponse> result =
      Exchange(request, deadline, std::chrono::nanoseconds::max(), buffer);
  if (!result.ok()) return result;
  UpstreamResponse& response = buffer.response();
  response.attempts = result->attempts;
  response.upstream_time = result->upstream_time;
  return std::move(response);
}

absl::StatusOr<UpstreamResponse> HttpSession::Stream(
    const UpstreamRequest& request, const Deadline& deadline,
    std::chrono::nanoseconds idle_timeout, ResponseSink& sink,
    ExchangeCanceller* canceller) {
  BeginExchange(canceller);
  absl::Cleanup end_exchange = [this, canceller] { EndExchange(canceller); };
  return Exchange(request, deadline, idle_timeout, sink);
}

absl::StatusOr<UpstreamResponse> HttpSession::Exchange(
    const UpstreamRequest& request, const Deadline& deadline,
    std::chrono::nanoseconds idle_timeout, ResponseSink& sink) {
  const MonoTime start = clock_.Now();
  BlockSigpipeOnThisThread();
  absl::Status pinned = Pin(deadline);
  dns_time_ = clock_.Now() - start;
  if (!pinned.ok()) {
    last_used_ = start;
    // A refusal by policy says nothing about the upstream's health.
    if (!absl::IsPermissionDenied(pinned)) ++consecutive_errors_;
    return pinned;
  }
  Attempt first;
  absl::Status status =
      SendTryingAddresses(request, deadline, idle_timeout, sink, first);
  Attempt* last = &first;
  Attempt second;
  second.number = 2;
  // A keep-alive connection the upstream closed while it sat idle fails before
  // any response byte; resending is safe only when the request is idempotent.
  const bool stale = first.reused && MayBeStaleConnection(first.failure);
  if (stale) {
    const bool safe =
        IsIdempotentMethod(request.method) ||
        std::any_of(request.headers.begin(), request.headers.end(),
                    [](const auto& h) {
                      return absl::EqualsIgnoreCase(h.first, "Idempotency-Key");
                    });
    if (safe && !deadline.Expired() && !AbortRequested()) {
      observer_.OnStaleRetry();
      status =
          SendTryingAddresses(request, deadline, idle_timeout, sink, second);
      last = &second;
    } else if (!safe) {
      status = WithDetailsOf(
          status, absl::StatusCode::kUnavailable,
          absl::StrFormat("%s: reused connection failed (%s); the request may "
                          "not have been delivered and %s is not idempotent, "
                          "so it was not retried",
                          Describe(), status.message(), request.method));
    }
  }
  last_used_ = clock_.Now();
  if (status.ok()) {
    consecutive_errors_ = 0;
    ++requests_served_;
    UpstreamResponse summary;
    summary.connection_reused = last->reused;
    summary.attempts = last->number;
    summary.upstream_time = last_used_ - start;
    return summary;
  }
  // Not session errors: an exchange the sink or the caller abandoned (a body
  // over a limit, a caller gone: the connection was closed on purpose) and a
  // stale connection that was not retried. A retry that failed on its fresh
  // connection is one.
  const bool stale_not_retried = stale && last == &first;
  if (IsSessionError(last->failure) && !stale_not_retried) {
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

absl::Status HttpSession::FailureStatus(const Attempt& attempt,
                                        ResponseSink& sink, nanoseconds budget,
                                        nanoseconds connect_budget,
                                        nanoseconds idle_timeout) const {
  // Most exchanges succeed: no text is formed for them.
  if (attempt.failure == UpstreamFailure::kNone) return absl::OkStatus();
  absl::Status status =
      FailureText(attempt, sink, budget, connect_budget, idle_timeout);
  // The sink's own status (a body over a limit, a slow reader) and a broken
  // head have their reasons already.
  if (attempt.failure == UpstreamFailure::kAbandoned || ReasonOf(status)) {
    return status;
  }
  return WithReason(std::move(status), FailureReason(attempt.failure),
                    {{"origin", origin_.Key()}, {"address", pinned_address_}});
}

absl::Status HttpSession::FailureText(const Attempt& attempt,
                                      ResponseSink& sink, nanoseconds budget,
                                      nanoseconds connect_budget,
                                      nanoseconds idle_timeout) const {
  const std::string where = Describe();
  switch (attempt.failure) {
    case UpstreamFailure::kNone:
      return absl::OkStatus();
    case UpstreamFailure::kAbandoned:
      return sink.AbortStatus();
    case UpstreamFailure::kCancelled:
      return absl::CancelledError(absl::StrFormat(
          "%s: exchange abandoned: the caller went away", where));
    case UpstreamFailure::kDeadline:
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s: no complete response within %.3fs", where, Seconds(budget)));
    case UpstreamFailure::kIdle:
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s: no data from the upstream for %.3fs (--stream_idle_timeout)",
          where, Seconds(idle_timeout)));
    case UpstreamFailure::kBadHead:
      return WithDetailsOf(
          exchange_.head_error, absl::StatusCode::kUnavailable,
          absl::StrCat(where, ": ", exchange_.head_error.message()));
    case UpstreamFailure::kConnectTimeout:
    case UpstreamFailure::kConnectDeadline:
      // The upstream did not answer within --connect_timeout: it is
      // unreachable, and the caller, whose deadline has time left, may try
      // again. Only when the call's own deadline cut the connect short is it
      // DEADLINE_EXCEEDED.
      return absl::Status(FailureCode(attempt.failure),
                          absl::StrFormat("connect to %s timed out after %.3fs",
                                          where, Seconds(connect_budget)));
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
          where, origin_.host));
    case UpstreamFailure::kTlsVerifyFailed:
      return absl::UnavailableError(absl::StrFormat(
          "%s: certificate verify failed: %s", where,
          X509_verify_cert_error_string(attempt.facts.verify_result)));
    case UpstreamFailure::kTlsHandshakeFailed: {
      const unsigned long tls_error = ERR_peek_error();  // the first: the cause
      const char* reason =
          tls_error != 0 ? ERR_reason_error_string(tls_error) : nullptr;
      return absl::UnavailableError(absl::StrFormat(
          "%s: TLS handshake failed%s%s", where, reason != nullptr ? ": " : "",
          reason != nullptr ? reason : ""));
    }
    case UpstreamFailure::kOther:
      break;
  }
  return absl::UnavailableError(
      absl::StrFormat("%s: upstream exchange failed: %s", where,
                      httplib::to_string(attempt.facts.error)));
}

absl::Status HttpSession::Pin(const Deadline& deadline) {
  if (options_.dns == nullptr || clock_.Now() < pinned_until_) {
    return absl::OkStatus();
  }
  absl::StatusOr<DnsCache::Answer> answer =
      options_.dns->Lookup(origin_.host, deadline);
  if (!answer.ok()) {
    return WithReason(answer.status(), ErrorReason::kDnsFailed,
                      {{"host", origin_.host}, {"origin", origin_.Key()}});
  }
  // Each address checked is one the session may connect to, and it connects
  // to no other: a later DNS answer cannot slip past (no re-resolution in
  // between). A refused address is never tried.
  absl::StatusOr<std::vector<std::string>> allowed =
      ConnectOrder(answer->addresses, options_.policy, pinned_address_);
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
  client_->set_hostname_addr_map({{origin_.host, pinned_address_}});
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
                                     kConnectHeadStart);
    status = SendOnce(request, deadline, idle_timeout, connect, sink, attempt);
    if (!IsConnectFailure(attempt.failure) || last || deadline.Expired() ||
        AbortRequested()) {
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
  if (AbortRequested()) {
    attempt.failure = UpstreamFailure::kCancelled;
    return FailureStatus(attempt, sink, remaining, connect_timeout,
                         idle_timeout);
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

  const int64_t opened_before = connections_opened_;
  PrepareExchange(request, deadline, idle_timeout, sink, attempt);
  httplib::Request req = ToHttplibRequest(request, sink, attempt);
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  // The watchdog waits in real time for what is left of the deadline.
  connect_deadline_ = RealClock::Get().Now() + remaining;
  const bool ok = client_->send(req, res, error);
  if (watch_ != 0) {
    internal::ConnectWatchdog::Get().Unwatch(watch_, connect_deadline_);
    watch_ = 0;
  }
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

  {
    std::lock_guard<std::mutex> lock(abort_mu_);
    attempt.facts.watchdog_fired = deadline_abort_;
    attempt.facts.cancelled = abort_requested_;
  }
  attempt.facts.error = ok ? httplib::Error::Success : error;
  attempt.facts.stream = exchange_.failure;
  attempt.facts.connect_cut_by_deadline = connect.cut_by_deadline;
  attempt.facts.verify_result = verify_result_;
  // A response that arrived whole stands, whatever happened after it.
  attempt.failure = ok && !attempt.facts.sink_aborted
                        ? UpstreamFailure::kNone
                        : ClassifyFailure(attempt.facts);
  return FailureStatus(attempt, sink, remaining, connect.time, idle_timeout);
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
    UpstreamResponse head;
    head.status = received.status;
    head.headers.reserve(received.headers.size());
    for (const auto& [name, value] : received.headers) {
      if (!IsServiceOwnedHeader(name)) head.headers.emplace_back(name, value);
    }
    const MonoTime now = clock_.Now();
    const bool new_socket = connections_opened_ != opened_before;
    head.connection_reused = !new_socket && requests_served_ > 0;
    head.attempts = attempt.number;
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
