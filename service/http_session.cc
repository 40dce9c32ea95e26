#include "service/http_session.h"

#include <fcntl.h>
#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <thread>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

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

bool IsIpv6(const std::string& address) {
  return address.find(':') != std::string::npos;
}

// RFC 8305, section 4: the first address's family first, then the families
// alternate, each keeping the resolver's order.
std::vector<std::string> HappyEyeballsOrder(
    const std::vector<std::string>& addresses) {
  std::vector<std::string> first_family;
  std::vector<std::string> other_family;
  for (const std::string& a : addresses) {
    (IsIpv6(a) == IsIpv6(addresses.front()) ? first_family : other_family)
        .push_back(a);
  }
  std::vector<std::string> ordered;
  ordered.reserve(addresses.size());
  for (size_t i = 0; i < std::max(first_family.size(), other_family.size());
       ++i) {
    if (i < first_family.size()) ordered.push_back(first_family[i]);
    if (i < other_family.size()) ordered.push_back(other_family[i]);
  }
  return ordered;
}

// An httplib client, plain (ClientImpl) or TLS (SSLClient), whose every
// exchange runs over an UpstreamStream bound to the session's exchange.
template <class Base>
class GuardedClient final : public Base {
 public:
  template <class... Args>
  explicit GuardedClient(UpstreamExchange& exchange, Args&&... args)
      : Base(std::forward<Args>(args)...), exchange_(exchange) {}

 private:
  bool process_socket(const typename Base::Socket& socket,
                      std::function<bool(httplib::Stream&)> callback) override {
    return Base::process_socket(socket, [&](httplib::Stream& inner) {
      UpstreamStream stream(inner, socket.sock, socket.ssl, exchange_, buffer_);
      const bool ok = callback(stream);
      // More than the response framed (or bytes nobody asked for): whatever
      // they are, they must not be read as the next response. (`socket` is
      // the client's own: httplib may have closed it already, for
      // "Connection: close" or HTTP/1.0, and then there is nothing to keep.)
      if (ok && socket.is_open() && stream.HasUnreadBytes()) {
        exchange_.leftover = true;
      }
      return ok;
    });
  }

  UpstreamExchange& exchange_;
  std::string buffer_;  // UpstreamStream's, kept between exchanges
};

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

  uint64_t Watch(HttpSession* session,
                 std::chrono::steady_clock::time_point deadline) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t id = ++last_id_;
    entries_.emplace(std::make_pair(deadline, id), session);
    wake_.notify_one();
    return id;
  }

  void Unwatch(uint64_t id, std::chrono::steady_clock::time_point deadline) {
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
      const std::chrono::steady_clock::time_point when = first->first.first;
      if (when > std::chrono::steady_clock::now()) {
        wake_.wait_until(lock, when);
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
  std::map<std::pair<std::chrono::steady_clock::time_point, uint64_t>,
           HttpSession*>
      entries_;  // guarded by mu_
};

}  // namespace internal

// What one call to httplib observed, beyond its Error code.
struct HttpSession::Attempt {
  int number = 1;
  bool reused = false;
  bool got_response = false;      // the final response head arrived
  bool sink_aborted = false;      // the sink said stop
  bool failed_in_stream = false;  // deadline, idle timeout or a bad head
  bool connect_failed = false;    // a new connection could not be made
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
    auto ssl = std::make_unique<GuardedClient<httplib::SSLClient>>(
        exchange_, origin_.host, origin_.port);
    // OpenSSL verifies the chain and the host name during the handshake, not
    // httplib after it: httplib's verification reloads the system roots into
    // the context on every new client (tens of ms of CPU per session, and a
    // write to the shared store from several workers at once).
    ssl->enable_server_certificate_verification(false);
    SSL_CTX_set_min_proto_version(ssl->ssl_context(), options_.tls_min_version);
    if (options_.verify_tls) ConfigureVerification(ssl->ssl_context());
    client_ = std::move(ssl);
  } else {
    client_ = std::make_unique<GuardedClient<httplib::ClientImpl>>(
        exchange_, origin_.host, origin_.port);
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
  client_.reset();
  if (abort_fd_ >= 0) close(abort_fd_);
}

void HttpSession::OnSocket(int fd) {
  {
    std::lock_guard<std::mutex> lock(abort_mu_);
    if (abort_fd_ >= 0) close(abort_fd_);
    abort_fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (abort_requested_ && abort_fd_ >= 0) shutdown(abort_fd_, SHUT_RDWR);
  }
  // Not under abort_mu_: the watchdog takes its own lock, then abort_mu_.
  if (watch_ == 0) {
    watch_ = internal::ConnectWatchdog::Get().Watch(this, connect_deadline_);
  }
}

void HttpSession::AbortAtDeadline() {
  std::lock_guard<std::mutex> lock(abort_mu_);
  if (!in_exchange_) return;
  deadline_abort_ = true;
  if (abort_fd_ >= 0) shutdown(abort_fd_, SHUT_RDWR);
}

void HttpSession::BeginExchange() {
  std::lock_guard<std::mutex> lock(abort_mu_);
  in_exchange_ = true;
  abort_requested_ = false;
  deadline_abort_ = false;
}

void HttpSession::EndExchange() {
  const bool open = client_->is_socket_open();
  std::lock_guard<std::mutex> lock(abort_mu_);
  in_exchange_ = false;
  abort_requested_ = false;
  deadline_abort_ = false;
  // httplib closed the connection: let the socket go.
  if (!open && abort_fd_ >= 0) {
    close(abort_fd_);
    abort_fd_ = -1;
  }
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

absl::StatusOr<UpstreamResponse> HttpSession::Exchange(
    const UpstreamRequest& request, MonoTime deadline,
    std::chrono::nanoseconds idle_timeout, ResponseSink& sink) {
  const MonoTime start = clock_.Now();
  BlockSigpipeOnThisThread();
  BeginExchange();
  absl::Cleanup end_exchange = [this] { EndExchange(); };
  absl::Status pinned = Pin(deadline);
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
  const bool stale = !status.ok() && first.reused && !first.got_response &&
                     !first.failed_in_stream && !first.sink_aborted &&
                     absl::IsUnavailable(status);
  if (stale) {
    const bool safe =
        IsIdempotentMethod(request.method) ||
        std::any_of(request.headers.begin(), request.headers.end(),
                    [](const auto& h) {
                      return absl::EqualsIgnoreCase(h.first, "Idempotency-Key");
                    });
    if (safe && clock_.Now() < deadline && !AbortRequested()) {
      observer_.OnStaleRetry();
      status =
          SendTryingAddresses(request, deadline, idle_timeout, sink, second);
      last = &second;
    } else if (!safe) {
      status = absl::UnavailableError(absl::StrFormat(
          "%s: reused connection failed (%s); the request may not have been "
          "delivered and %s is not idempotent, so it was not retried",
          Describe(), status.message(), request.method));
    }
  }
  last_used_ = clock_.Now();
  const bool aborted = AbortRequested();
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

absl::Status HttpSession::ConnectTimeout(microseconds budget,
                                         bool cut_by_deadline) const {
  const std::string message =
      absl::StrFormat("connect to %s timed out after %.3fs", Describe(),
                      Seconds(duration_cast<nanoseconds>(budget)));
  // The upstream did not answer within --connect_timeout: it is unreachable,
  // and the caller, whose deadline has time left, may try again. Only when the
  // call's own deadline cut the connect short is it DEADLINE_EXCEEDED.
  if (cut_by_deadline) return absl::DeadlineExceededError(message);
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
      if (got_response) {
        return absl::UnavailableError(absl::StrFormat(
            "%s: response body incomplete: the connection closed or was reset, "
            "or the body's framing was broken (Content-Length or chunks)",
            Describe()));
      }
      return absl::UnavailableError(absl::StrFormat(
          "%s: connection closed or reset before any response", Describe()));
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
      {
        const unsigned long tls_error =
            ERR_peek_error();  // the first: the cause
        const char* reason =
            tls_error != 0 ? ERR_reason_error_string(tls_error) : nullptr;
        return absl::UnavailableError(absl::StrFormat(
            "%s: TLS handshake failed%s%s", Describe(),
            reason != nullptr ? ": " : "", reason != nullptr ? reason : ""));
      }
    default:
      return absl::UnavailableError(
          absl::StrFormat("%s: upstream exchange failed: %s", Describe(),
                          httplib::to_string(error)));
  }
}

absl::Status HttpSession::Pin(MonoTime deadline) {
  if (options_.dns == nullptr || clock_.Now() < pinned_until_) {
    return absl::OkStatus();
  }
  absl::StatusOr<DnsCache::Answer> answer =
      options_.dns->Lookup(origin_.host, deadline);
  if (!answer.ok()) return answer.status();
  // Each address checked is one the session may connect to, and it connects
  // to no other: a later DNS answer cannot slip past (no re-resolution in
  // between). A refused address is never tried.
  std::vector<std::string> allowed;
  absl::Status refusal;
  for (const std::string& address : answer->addresses) {
    absl::Status checked = options_.policy != nullptr
                               ? options_.policy->CheckAddress(address)
                               : absl::OkStatus();
    if (checked.ok()) {
      allowed.push_back(address);
    } else if (refusal.ok()) {
      refusal = std::move(checked);
    }
  }
  if (allowed.empty()) return refusal;
  std::vector<std::string> ordered = HappyEyeballsOrder(allowed);
  // The address that worked stays first.
  auto working = std::find(ordered.begin(), ordered.end(), pinned_address_);
  if (working != ordered.end()) {
    std::rotate(ordered.begin(), working, working + 1);
  }
  const bool moved =
      !pinned_address_.empty() && ordered.front() != pinned_address_;
  candidates_ = std::move(ordered);
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
    const UpstreamRequest& request, MonoTime deadline,
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
    attempt.connect_failed = false;
    status = SendOnce(request, deadline, idle_timeout, connect, sink, attempt);
    if (!attempt.connect_failed || last || clock_.Now() >= deadline ||
        AbortRequested()) {
      break;
    }
    UseAddress(i + 1);
  }
  if (status.ok() && i > 0) {
    // Remember the address that worked: it is tried first from now on.
    std::rotate(candidates_.begin(), candidates_.begin() + i,
                candidates_.begin() + i + 1);
  } else if (!status.ok() && attempt.connect_failed && count > 1) {
    status = absl::Status(
        status.code(),
        absl::StrCat(status.message(), " (tried every address of \"",
                     origin_.host, "\": ", absl::StrJoin(candidates_, ", "),
                     ")"));
  }
  return status;
}

absl::Status HttpSession::SendOnce(const UpstreamRequest& request,
                                   MonoTime deadline,
                                   std::chrono::nanoseconds idle_timeout,
                                   std::chrono::nanoseconds connect_timeout,
                                   ResponseSink& sink, Attempt& attempt) {
  const MonoTime start = clock_.Now();
  const nanoseconds remaining = deadline - start;
  if (remaining <= nanoseconds::zero()) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "%s: deadline passed before the request was sent", Describe()));
  }
  if (AbortRequested()) return absl::CancelledError("exchange abandoned");
  verify_result_ = X509_V_OK;
  ERR_clear_error();
  const auto budget =
      std::max(duration_cast<microseconds>(remaining), microseconds(1));
  const bool connect_cut_by_deadline =
      budget < duration_cast<microseconds>(connect_timeout);
  const microseconds connect_budget =
      std::min(budget, duration_cast<microseconds>(connect_timeout));
  client_->set_connection_timeout(connect_budget);
  // UpstreamStream enforces the deadline (and the idle timeout) before every
  // read and write; httplib's own per-operation timeouts are only a backstop,
  // for the TLS handshake and a TLS record that arrives in pieces.
  client_->set_read_timeout(budget);
  client_->set_write_timeout(budget);

  const int64_t opened_before = connections_opened_;
  exchange_ = UpstreamExchange{};
  exchange_.clock = &clock_;
  exchange_.deadline = deadline;
  exchange_.idle_timeout = idle_timeout;
  exchange_.limits = options_.head_limits;
  exchange_.head_request = request.method == "HEAD";
  exchange_.on_head = [&](const ResponseHead& received) {
    attempt.got_response = true;
    UpstreamResponse head;
    head.status = received.status;
    head.headers.reserve(received.headers.size());
    for (const auto& [name, value] : received.headers) {
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

  httplib::Request req;
  req.method = request.method;
  req.path = request.target;
  for (const auto& [name, value] : request.headers) {
    req.headers.emplace(name, value);
  }
  req.headers.emplace("Host", request.origin.HostHeader());
  req.body = request.body;
  req.content_receiver = [&](const char* data, size_t length, uint64_t,
                             uint64_t) {
    if (!sink.OnBody(data, length)) {
      attempt.sink_aborted = true;
      return false;
    }
    return true;
  };

  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  connect_deadline_ = std::chrono::steady_clock::now() + remaining;
  const bool ok = client_->send(req, res, error);
  if (watch_ != 0) {
    internal::ConnectWatchdog::Get().Unwatch(watch_, connect_deadline_);
    watch_ = 0;
  }
  bool deadline_abort;
  {
    std::lock_guard<std::mutex> lock(abort_mu_);
    deadline_abort = deadline_abort_;
  }
  // A socket counts as a connection (and, for https, a handshake) once it is
  // up: connects that failed over to another address are not.
  const bool new_socket = connections_opened_ != opened_before;
  const bool opened = new_socket && exchange_.connected;
  attempt.reused = !new_socket && requests_served_ > 0;
  if (opened) observer_.OnConnectionOpened(origin_.scheme == "https");
  if (attempt.reused) observer_.OnConnectionReused();
  // Bytes beyond the response: never read them as the next one.
  if (exchange_.leftover) client_->stop();

  if (attempt.sink_aborted) return sink.AbortStatus();
  if (ok) return absl::OkStatus();
  attempt.failed_in_stream =
      exchange_.failure != UpstreamExchange::Failure::kNone || deadline_abort;
  if (deadline_abort) return Timeout(remaining);
  switch (exchange_.failure) {
    case UpstreamExchange::Failure::kDeadline:
      return Timeout(remaining);
    case UpstreamExchange::Failure::kIdle:
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s: no data from the upstream for %.3fs (--stream_idle_timeout)",
          Describe(), Seconds(idle_timeout)));
    case UpstreamExchange::Failure::kHead:
      return absl::UnavailableError(
          absl::StrCat(Describe(), ": ", exchange_.head_error.message()));
    case UpstreamExchange::Failure::kRejected:
      return sink.AbortStatus();
    case UpstreamExchange::Failure::kNone:
      break;
  }
  attempt.connect_failed = error == httplib::Error::ConnectionTimeout ||
                           error == httplib::Error::Connection;
  switch (error) {
    case httplib::Error::ConnectionTimeout:
      return ConnectTimeout(connect_budget, connect_cut_by_deadline);
    case httplib::Error::Connection:
      return absl::UnavailableError(absl::StrFormat(
          "connect to %s failed: connection refused or unreachable",
          Describe()));
    default:
      return TransportError(error, attempt.got_response);
  }
}

}  // namespace egress
