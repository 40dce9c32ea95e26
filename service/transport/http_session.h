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
// address (each but the last gets a short head start, --connect_head_start),
// within the deadline; nothing was sent, so this is safe for any method. The
// address that worked is tried first from then on.
//
// An exchange that fails on a reused connection before any response arrived
// (ExchangeOutcome::stale) is not a session error: an upstream may close an
// idle connection at any moment. Whether to send it again on a fresh
// connection is the call's decision (attempt_loop.h).
//
// A session is in one State at a time: kReady between exchanges,
// kInExchange during one, and after an exchange kBroken (max_errors
// consecutive failures) or kExhausted (max_requests served), which are final:
// SessionCache drops it.
//
// The session moves bytes: the response goes to a ResponseSink as it
// arrives (whole_response.h keeps it whole, for Do), and aborts, connect
// deadlines, the httplib client and the failure wording are their own units
// (exchange_abort.h, connect_watchdog.h, guarded_client.h,
// upstream_failure.h).
//
// Usage:
//   HttpSession session(origin, options, RealClock::Get(), observer);
//   ExchangeCanceller canceller;  // Cancel() from another thread aborts it
//   ExchangeOutcome r = session.Exchange(request, deadline, sink, &canceller);
//
// Thread safety: not thread-safe. One worker thread owns a session and is the
// only one to call it (httplib::Client must be used by one thread at a time).
// The first Exchange on a thread blocks SIGPIPE on that thread: a TLS
// write to a closed connection then fails with EPIPE instead of killing the
// process.
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service/base/clock.h"
#include "service/base/deadline.h"
#include "service/base/defaults.h"
#include "service/base/http_types.h"
#include "service/policy/destination_policy.h"
#include "service/transport/dns_cache.h"
#include "service/transport/exchange_abort.h"
#include "service/transport/proxy_tunnel.h"
#include "service/transport/response_head.h"
#include "service/transport/session_observer.h"
#include "service/transport/tls_session_store.h"
#include "service/transport/tls_trust.h"
#include "service/transport/upstream_failure.h"
#include "service/transport/upstream_stream.h"

namespace httplib {
class ClientImpl;
struct Request;
enum class Error;
}  // namespace httplib

namespace egress {
namespace internal {
class ConnectionView;

// What the client tells its owner, and the exchange it reads.
class ClientOwner {
 public:
  // The exchange in progress, which the UpstreamStream enforces.
  virtual UpstreamExchange& exchange() = 0;
  // The connection is up on `fd`, and httplib processes the exchange on it.
  virtual void OnExchangeSocket(int fd) = 0;
  // httplib is about to close the connection's socket, or the exchange's
  // process step ended.
  virtual void OnSocketClosing() = 0;
  // Before each TLS handshake.
  virtual void PrepareTls(SSL* ssl) = 0;
  // Where a new connection goes instead of the origin (an upstream proxy's
  // address, or its name without a DnsCache, and port), or nullptr.
  virtual const std::pair<std::string, int>* ProxyHop() = 0;
  // https through a proxy: asks it for a tunnel to the origin on the
  // connected socket `fd`; false when there is none (the owner knows why).
  virtual bool OpenProxyTunnel(int fd) = 0;

 protected:
  ~ClientOwner() = default;
};

}  // namespace internal

struct SessionOptions {
  std::chrono::nanoseconds connect_timeout = defaults::kConnectTimeout;
  // A connect to one of several addresses that takes longer moves on to the
  // next address (--connect_head_start; the last address gets
  // connect_timeout).
  std::chrono::nanoseconds connect_head_start = defaults::kConnectHeadStart;
  // Consecutive failures after which the session is Broken().
  int max_errors = defaults::kMaxSessionErrors;
  // Requests after which the session is Exhausted(); 0 means unlimited.
  int64_t max_requests = defaults::kMaxRequestsPerSession;
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

  // What an origin entry (admission/origin_table.h) may set besides:
  // https: the roots instead of trust_store, kept alive by the session.
  std::shared_ptr<const TrustStore> origin_trust;
  // https: the certificate presented when the upstream asks for one.
  std::shared_ptr<const ClientIdentity> client_identity;
  // https: the name sent in SNI and verified in the certificate, instead of
  // the origin's host.
  std::string sni;
  // Sessions made with other options than the service-wide ones are pooled
  // apart: pool_key() is the origin's key and this tag. Empty: the
  // service-wide sessions.
  std::string pool_tag;
  // The upstream proxy the sessions go through; nullptr: direct.
  std::shared_ptr<const UpstreamProxy> proxy;
  // When set, replace the pool's keep-alive timeout and idle sessions per
  // origin for these sessions.
  std::optional<std::chrono::nanoseconds> keepalive_timeout;
  std::optional<size_t> max_idle;
};

// Where the pool keeps a session of `origin_key` made with `pool_tag`
// (SessionOptions): the key alone for the service-wide sessions.
std::string PoolKey(const std::string& origin_key, const std::string& pool_tag);

// No idle timeout: only the deadline bounds the wait for the upstream.
inline constexpr std::chrono::nanoseconds kNoIdleTimeout =
    std::chrono::nanoseconds::max();

// Receives one response as it arrives. Called on the thread that called
// HttpSession::Exchange.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // The head: status and headers (hop-by-hop removed), whether the connection
  // was reused, the time to the head (attempts: 1, as far as the session
  // knows). `body_length`: the body's size when the head frames it by
  // Content-Length (never for HEAD, 204 or 304), else nullopt. Return false
  // to abandon the exchange.
  virtual bool OnHead(UpstreamHead head,
                      std::optional<uint64_t> body_length) = 0;
  // Body bytes, in order. Return false to abandon the exchange.
  virtual bool OnBody(const char* data, size_t size) = 0;
  // After OnHead or OnBody returned false: the status Exchange returns. An
  // abandoned exchange is never a session error.
  virtual absl::Status AbortStatus() const = 0;
};

// How one exchange ended.
struct ExchangeOutcome {
  absl::Status status;  // OK: the whole response went to the sink
  UpstreamFailure failure = UpstreamFailure::kNone;
  // It went over a connection kept from an earlier exchange.
  bool reused = false;
  std::chrono::nanoseconds upstream_time{0};
  // It failed on a reused connection before any response arrived: the
  // upstream may only have closed the connection while it was idle, and the
  // request may be sent again on a fresh one when that is safe.
  bool stale() const { return reused && MayBeStaleConnection(failure); }
};

class HttpSession final : public internal::ClientOwner {
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

  // Sends `request` (whose origin must be this session's) and hands the
  // response to `sink` as it arrives. `deadline` bounds the exchange;
  // reading fails with DEADLINE_EXCEEDED when the upstream sends nothing for
  // `idle_timeout`. `canceller` (optional; it must outlive the call) may
  // abort it, and it then fails with CANCELLED. Other errors: UNAVAILABLE
  // (connect refused, reset, protocol error), PERMISSION_DENIED (no address
  // the policy allows), and the sink's AbortStatus when it stopped the
  // exchange. REQUIRES: state() is kReady.
  ExchangeOutcome Exchange(
      const UpstreamRequest& request, const Deadline& deadline,
      ResponseSink& sink, ExchangeCanceller* canceller = nullptr,
      std::chrono::nanoseconds idle_timeout = kNoIdleTimeout);

  State state() const;

  const Origin& origin() const { return origin_; }
  SessionObserver& observer() const { return observer_; }
  // "http://host:80", plus the pinned address when it differs from the host.
  std::string Describe() const;
  // origin().Key(), made once.
  const std::string& key() const { return key_; }
  // Where the pool keeps the session: key(), and the options' pool_tag.
  const std::string& pool_key() const { return pool_key_; }
  const SessionOptions& options() const { return options_; }

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
  struct Attempt;
  // internal::ClientOwner, for client_.
  UpstreamExchange& exchange() override { return exchange_; }
  void OnExchangeSocket(int fd) override { abort_.OnExchangeSocket(fd); }
  void OnSocketClosing() override { abort_.OnSocketClosing(); }
  // Before each handshake: offers a saved session of the origin.
  void PrepareTls(SSL* ssl) override;
  const std::pair<std::string, int>* ProxyHop() override {
    return options_.proxy != nullptr ? &proxy_hop_ : nullptr;
  }
  bool OpenProxyTunnel(int fd) override;
  // A proxied attempt's failure: the proxy's, when it was the proxy that
  // failed or refused.
  void ClassifyProxyFailure(Attempt& attempt) const;
  // OpenSSL's new-session callback: saves the session for resumption.
  static int OnNewTlsSession(SSL* ssl, SSL_SESSION* session);
  // OpenSSL's info callback: notes when a handshake begins.
  static void OnTlsInfo(const SSL* ssl, int where, int ret);
  // The TLS client, set up to verify during the handshake and to resume.
  std::unique_ptr<httplib::ClientImpl> NewTlsClient();
  // Resolves the host through the DnsCache when the pinned answer has expired.
  absl::Status Pin(const Deadline& deadline);
  // Counts the exchange's result in the session's state.
  void Count(const ExchangeOutcome& outcome);
  absl::Status SendOnce(const UpstreamRequest& request,
                        const Deadline& deadline,
                        std::chrono::nanoseconds idle_timeout,
                        std::chrono::nanoseconds connect_timeout,
                        ResponseSink& sink, Attempt& attempt);
  // The status of a failed attempt, worded for the caller.
  absl::Status FailureOf(const Attempt& attempt, ResponseSink& sink,
                         std::chrono::nanoseconds budget,
                         std::chrono::nanoseconds connect_budget,
                         std::chrono::nanoseconds idle_timeout) const;
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
  // A new socket, before its connect (httplib's socket callback).
  void OnSocket(int fd);

  const Origin origin_;
  const std::string key_;
  const SessionOptions options_;
  const std::string pool_key_;
  const Clock& clock_;
  SessionObserver& observer_;
  // Aborts of the exchange in progress; outlives client_, which reports to it.
  ExchangeAbort abort_;
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
  // With a proxy: its address (or name) and port, connected to instead of
  // the origin; and the attempt in progress, which a tunnel reports to.
  std::pair<std::string, int> proxy_hop_;
  Attempt* attempt_ = nullptr;
  MonoTime pinned_until_;  // re-resolve from then on
  // Sockets the client has opened; bumped from httplib's socket callback, which
  // runs on the thread that calls Exchange.
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
};

}  // namespace egress
