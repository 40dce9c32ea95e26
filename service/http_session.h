// HttpSession: one keep-alive HTTP/1.1 connection to one origin, with the
// bookkeeping that decides when it must be replaced.
//
// A session wraps one httplib::Client. The client keeps its socket open between
// requests, so a second request to the same origin costs no connect. The
// session counts consecutive transport failures (connect error, reset, timeout,
// protocol error); any upstream answer resets the count. SessionCache drops the
// session when Broken() or Exhausted(), or when it has been idle too long.
//
// Every exchange runs over an UpstreamStream: one deadline covers the upload,
// the response head and the body; the head is read under HeadLimits; why an
// exchange failed is recorded, not guessed.
//
// With a DnsCache, the session knows every address of its host that the policy
// allows, in Happy-Eyeballs order (RFC 8305: the resolver's first family first,
// then alternating). A new connection that cannot be made moves on to the next
// address (each but the last gets a short head start, kConnectHeadStart),
// within the deadline; nothing was sent, so this is safe for any method. The
// address that worked is tried first from then on.
//
// A request that fails on a reused connection before any response arrived is
// sent once more on a fresh connection when that is safe (idempotent method or
// an Idempotency-Key header): an upstream may close an idle connection at any
// moment. That retry is not a session error.
//
// A session is in one State at a time: kReady between exchanges,
// kInExchange during one, and after an exchange kBroken (max_errors
// consecutive failures) or kExhausted (max_requests served), which are final:
// SessionCache drops it.
//
// Usage:
//   HttpSession session(origin, options, RealClock::Get(), observer);
//   ExchangeCanceller canceller;  // Cancel() from another thread aborts it
//   absl::StatusOr<UpstreamResponse> r =
//       session.Send(request, deadline, &canceller);
//
// Thread safety: not thread-safe. One worker thread owns a session and is the
// only one to call it (httplib::Client must be used by one thread at a time).
// The first Send or Stream on a thread blocks SIGPIPE on that thread: a TLS
// write to a closed connection then fails with EPIPE instead of killing the
// process.
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service/clock.h"
#include "service/deadline.h"
#include "service/defaults.h"
#include "service/destination_policy.h"
#include "service/dns_cache.h"
#include "service/http_types.h"
#include "service/memory_budget.h"
#include "service/response_head.h"
#include "service/session_observer.h"
#include "service/tls_session_store.h"
#include "service/upstream_failure.h"
#include "service/upstream_stream.h"

namespace httplib {
class ClientImpl;
struct Request;
enum class Error;
}  // namespace httplib

namespace egress {
namespace internal {
class ConnectWatchdog;
template <class Base>
class GuardedClient;

// What the session reads of its client's connection (implemented by the
// client): the socket, and for TLS its SSL. Owner thread only.
class ConnectionView {
 public:
  virtual ~ConnectionView() = default;
  virtual int socket() const = 0;  // -1 when there is no connection
  virtual SSL* ssl() const = 0;    // nullptr for plain HTTP
};
}  // namespace internal

// How long a connect to one of several addresses may take before the next
// address is tried (sequential Happy Eyeballs; RFC 8305 races at 250 ms).
inline constexpr std::chrono::milliseconds kConnectHeadStart{300};

struct SessionOptions {
  std::chrono::nanoseconds connect_timeout = defaults::kConnectTimeout;
  // Consecutive failures after which the session is Broken().
  int max_errors = defaults::kMaxSessionErrors;
  // Requests after which the session is Exhausted(); 0 means unlimited.
  int64_t max_requests = defaults::kMaxRequestsPerSession;
  // Larger response bodies fail with RESOURCE_EXHAUSTED.
  size_t max_response_bytes = defaults::kMaxResponseBytes;
  // Bounds on each response head (--max_response_*).
  HeadLimits head_limits;
  // https: the oldest TLS version accepted (--upstream_tls_min_version), as
  // OpenSSL's TLS1_2_VERSION or TLS1_3_VERSION.
  int tls_min_version = defaults::kUpstreamTlsMinProtocol;
  // https: verify the upstream's certificate and host name.
  bool verify_tls = true;
  // https: the roots to verify against (each session takes a reference);
  // nullptr means httplib's default, the system store.
  X509_STORE* trust_store = nullptr;
  // Where host names are resolved; nullptr lets httplib resolve them itself.
  DnsCache* dns = nullptr;
  // Checks every address before the session connects to it (needs `dns`, which
  // pins the checked address as the connected one); nullptr checks nothing.
  const DestinationPolicy* policy = nullptr;
  // https: where TLS sessions are saved and offered for resumption, shared by
  // every session of the process; nullptr: every handshake is a full one.
  TlsSessionStore* tls_sessions = nullptr;
};

// Receives one response as it arrives. Called on the thread that called
// HttpSession::Stream.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // The head: status and headers (hop-by-hop removed), whether the connection
  // was reused, the attempt number, and the time to the head. `body` is empty.
  // `body_length`: the body's size when the head frames it by Content-Length
  // (never for HEAD, 204 or 304), else nullopt. Return false to abandon the
  // exchange.
  virtual bool OnHead(UpstreamResponse head,
                      std::optional<uint64_t> body_length) = 0;
  // Body bytes, in order. Return false to abandon the exchange.
  virtual bool OnBody(const char* data, size_t size) = 0;
  // After OnHead or OnBody returned false: the status Stream returns. An
  // abandoned exchange is never a session error.
  virtual absl::Status AbortStatus() const = 0;
};

class HttpSession;

// Links one call to the exchange that serves it, so that the call can be
// abandoned from another thread (the caller went away, the drain is over).
// The session attaches itself for the length of one exchange only: a Cancel
// reaches the exchange it was made for, now or when it starts, and never a
// later exchange on the same session. Thread-safe.
class ExchangeCanceller {
 public:
  // Aborts the attached exchange at once, and any exchange attached later.
  // Never blocks on the upstream: it only shuts a socket down.
  void Cancel();
  bool cancelled() const;
  // Waits `d` between exchanges (a Retry-After); false, at once, when the
  // call is or gets cancelled.
  bool WaitFor(std::chrono::nanoseconds d);

 private:
  friend class HttpSession;
  void Attach(HttpSession* session);
  void Detach();

  mutable std::mutex mu_;
  std::condition_variable cancelled_cv_;
  HttpSession* session_ = nullptr;  // guarded by mu_
  bool cancelled_ = false;          // guarded by mu_
};

class HttpSession {
 public:
  enum class State {
    kReady,       // idle, may take an exchange
    kInExchange,  // Send or Stream is running
    kBroken,      // max_errors consecutive failures: to be replaced
    kExhausted,   // served max_requests: to be replaced
  };

  // REQUIRES: `clock` and `observer` outlive the session.
  HttpSession(Origin origin, const SessionOptions& options, const Clock& clock,
              SessionObserver& observer);
  ~HttpSession();
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;

  // Sends `request` (whose origin must be this session's) and reads the whole
  // response. `deadline` bounds the exchange, retries included; `canceller`
  // (optional; it must outlive the call) may abort it, and it then fails
  // with CANCELLED. Other errors: UNAVAILABLE (connect refused, reset,
  // protocol error), DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (response body
  // over max_response_bytes). REQUIRES: state() is kReady.
  // `budget` (optional) holds the response body's bytes: over it, the
  // exchange ends with RESOURCE_EXHAUSTED naming --max_buffered_bytes.
  absl::StatusOr<UpstreamResponse> Send(const UpstreamRequest& request,
                                        const Deadline& deadline,
                                        ExchangeCanceller* canceller = nullptr,
                                        BudgetLease* budget = nullptr);

  // Sends `request` and hands the response to `sink` as it arrives. Reading
  // fails with DEADLINE_EXCEEDED when the upstream sends nothing for
  // `idle_timeout` (or the deadline passes). On success returns the head's
  // fields with the final attempts and upstream time (and an empty body).
  absl::StatusOr<UpstreamResponse> Stream(
      const UpstreamRequest& request, const Deadline& deadline,
      std::chrono::nanoseconds idle_timeout, ResponseSink& sink,
      ExchangeCanceller* canceller = nullptr);

  State state() const;

  const Origin& origin() const { return origin_; }
  // origin().Key(), made once.
  const std::string& key() const { return key_; }

  // False when the session's idle connection can no longer serve a request:
  // the upstream closed or reset it, or sent bytes nobody asked for (a TLS
  // record that is not application data, such as a session ticket, is fine).
  // True when there is no connection (the next exchange opens one). A poll(2)
  // and, only when something arrived, a peek. REQUIRES: state() is not
  // kInExchange.
  bool IdleConnectionUsable();
  // The address this session connects to; empty before the first Send or
  // without a DnsCache.
  const std::string& pinned_address() const { return pinned_address_; }
  // Every allowed address of the host, in the order they are tried.
  const std::vector<std::string>& addresses() const { return candidates_; }
  int consecutive_errors() const { return consecutive_errors_; }
  int64_t requests_served() const { return requests_served_; }
  MonoTime last_used() const { return last_used_; }

 private:
  friend class ExchangeCanceller;
  struct Attempt;
  template <class Base>
  friend class internal::GuardedClient;
  // OpenSSL's new-session callback: saves the session for resumption.
  static int OnNewTlsSession(SSL* ssl, SSL_SESSION* session);
  // Before each handshake: offers a saved session of the origin.
  void PrepareTls(SSL* ssl);
  // The connection's socket, up and owned by httplib until the exchange's
  // process step ends: Abort shuts it down directly from now on (no duplicate).
  void OnExchangeSocket(int fd);
  // httplib is about to close the connection's socket (or the process step
  // ended): Abort must no longer touch its number.
  void OnSocketClosing();
  absl::StatusOr<UpstreamResponse> Exchange(
      const UpstreamRequest& request, const Deadline& deadline,
      std::chrono::nanoseconds idle_timeout, ResponseSink& sink);
  // OpenSSL's info callback: notes when a handshake begins.
  static void OnTlsInfo(const SSL* ssl, int where, int ret);
  // Resolves the host through the DnsCache when the pinned answer has expired.
  absl::Status Pin(const Deadline& deadline);
  // "http://host:80", plus the pinned address when it differs from the host.
  std::string Describe() const;
  // The status a failed attempt is answered with, worded for the caller.
  absl::Status FailureStatus(const Attempt& attempt, ResponseSink& sink,
                             std::chrono::nanoseconds budget,
                             std::chrono::nanoseconds connect_budget,
                             std::chrono::nanoseconds idle_timeout) const;
  // FailureStatus without its ErrorInfo.
  absl::Status FailureText(const Attempt& attempt, ResponseSink& sink,
                           std::chrono::nanoseconds budget,
                           std::chrono::nanoseconds connect_budget,
                           std::chrono::nanoseconds idle_timeout) const;
  absl::Status SendOnce(const UpstreamRequest& request,
                        const Deadline& deadline,
                        std::chrono::nanoseconds idle_timeout,
                        std::chrono::nanoseconds connect_timeout,
                        ResponseSink& sink, Attempt& attempt);
  // Binds exchange_ (what UpstreamStream reads) to this attempt: the
  // deadline, the head limits, and the head's way to `sink`.
  void PrepareExchange(const UpstreamRequest& request, const Deadline& deadline,
                       std::chrono::nanoseconds idle_timeout,
                       ResponseSink& sink, Attempt& attempt);
  // The request as httplib sends it, its body going to `sink`.
  httplib::Request ToHttplibRequest(const UpstreamRequest& request,
                                    ResponseSink& sink, Attempt& attempt) const;
  // SendOnce, moving on to the host's next address when a new connection
  // cannot be made.
  absl::Status SendTryingAddresses(const UpstreamRequest& request,
                                   const Deadline& deadline,
                                   std::chrono::nanoseconds idle_timeout,
                                   ResponseSink& sink, Attempt& attempt);
  // Connects to candidates_[i] from now on.
  void UseAddress(size_t i);
  // A new socket, before its connect: keeps a duplicate of it for Abort until
  // the connection is up (httplib may close a socket whose connect failed
  // without telling anyone), and has the connect and TLS handshake watched
  // against the exchange's deadline.
  void OnSocket(int fd);
  // The watchdog's Abort: the exchange's deadline passed while connecting.
  void AbortAtDeadline();
  friend class internal::ConnectWatchdog;
  // Marks the start and end of an exchange, for Abort and `canceller`.
  void BeginExchange(ExchangeCanceller* canceller);
  void EndExchange(ExchangeCanceller* canceller);
  // Abandons the exchange in progress, if any (ExchangeCanceller::Cancel):
  // shuts its socket down, so that any wait on the upstream ends at once.
  // Never waits on httplib's locks; between exchanges it does nothing.
  void Abort();
  bool AbortRequested();

  const Origin origin_;
  const std::string key_;
  const SessionOptions options_;
  const Clock& clock_;
  SessionObserver& observer_;
  // The exchange in progress, read by client_'s UpstreamStream.
  UpstreamExchange exchange_;
  std::unique_ptr<httplib::ClientImpl> client_;
  // client_'s connection, for IdleConnectionUsable.
  const internal::ConnectionView* connection_ = nullptr;
  // The first certificate verification failure of the last handshake (an
  // X509_V_ERR_* code), written by OpenSSL's verify callback on this thread.
  long verify_result_ = 0;
  std::string pinned_address_;
  std::vector<std::string> candidates_;  // policy-checked; [0] is tried first
  MonoTime pinned_until_;                // re-resolve from then on
  // Sockets the client has opened; bumped from httplib's socket callback, which
  // runs on the thread that calls Send.
  int64_t connections_opened_ = 0;
  // The phases of the exchange in progress: when the last socket opened and
  // its TLS handshake began (clock_, on this thread), and the DNS step.
  MonoTime socket_opened_at_{};
  MonoTime handshake_started_at_{};
  // Whether the last handshake resumed a saved TLS session.
  bool handshake_resumed_ = false;
  std::chrono::nanoseconds dns_time_{0};
  int consecutive_errors_ = 0;
  int64_t requests_served_ = 0;
  MonoTime last_used_;

  // Abort's view of the session; touched by the owner only when a connection
  // opens, when it comes up and closes, and at the start and end of an
  // exchange.
  std::mutex abort_mu_;
  // The socket Abort shuts down: while a new connection is being made, a
  // duplicate the session owns (abort_fd_owned_), whose number cannot be
  // reused by another socket while it is open, even if httplib closes the
  // original; while httplib processes an exchange on the connection, the
  // connection's own socket, unregistered (OnSocketClosing) before httplib
  // closes it; else -1. Idle connections hold one descriptor.
  int abort_fd_ = -1;             // guarded by abort_mu_
  bool abort_fd_owned_ = false;   // guarded by abort_mu_
  bool in_exchange_ = false;      // guarded by abort_mu_
  bool abort_requested_ = false;  // guarded by abort_mu_
  bool deadline_abort_ = false;   // guarded by abort_mu_: by the watchdog
  // The exchange's deadline in real time (RealClock), for the watchdog; set by
  // the owner before each send.
  MonoTime connect_deadline_;
  uint64_t watch_ = 0;  // the watchdog's entry for this connect; 0: none
};

}  // namespace egress
