// Plain value types for one outbound HTTP exchange, shared by validation,
// sessions and the gRPC adapter. They carry no protobuf or httplib types, so
// the session layer builds and tests without gRPC (and so under TSan).
//
// Thread safety: values; no shared state.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace egress {

// scheme://host:port, the key of a session. `host` is lower-case; an IPv6
// literal is kept without brackets.
struct Origin {
  std::string scheme;  // "http" or "https"
  std::string host;
  uint16_t port = 0;

  // "http://example.com:80": a stable key for maps and logs.
  std::string Key() const;
  // host[:port] as sent in the Host header: brackets around IPv6 literals, the
  // port left out when it is the scheme's default.
  std::string HostHeader() const;

  friend bool operator==(const Origin& a, const Origin& b) {
    return a.port == b.port && a.host == b.host && a.scheme == b.scheme;
  }
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// A request that passed validation: safe to put on the wire as is.
struct UpstreamRequest {
  std::string method;
  Origin origin;
  std::string target;  // path and query, starting with '/'
  HeaderList headers;  // in the caller's order; none of the service-owned ones
  std::string body;
  // The caller's own timeout, when it gave one (zero means none given).
  std::chrono::nanoseconds timeout{0};
  // Retries of answers that ask for them (DoRequest.retry; answer_retry.h).
  struct Retry {
    int max_attempts = 1;  // the first included; 1: none
    std::optional<std::chrono::nanoseconds> max_wait;  // none: the deadline
  } retry;
};

// The response head as it arrived, and how the exchange got it this far.
struct UpstreamHead {
  int status = 0;
  HeaderList headers;  // hop-by-hop headers removed; repeated names keep order
  bool connection_reused = false;
  // Attempts so far: connections tried for this call (a stale connection's
  // resend is one more), over every answer retried after its Retry-After.
  int attempts = 0;
  std::chrono::nanoseconds upstream_time{0};
  // Phases of the exchange (the last attempt's), zero when it had none: a
  // cached DNS answer, a reused connection (no connect or TLS), plain HTTP
  // (no TLS).
  std::chrono::nanoseconds dns_time{0};
  std::chrono::nanoseconds connect_time{0};
  std::chrono::nanoseconds tls_time{0};
  // From the start of the exchange (DNS included) to the response head.
  std::chrono::nanoseconds first_byte_time{0};
  // The address and port the request went to.
  std::string remote_address;
  int remote_port = 0;
  // Time waited as answers' Retry-After asked, before this answer.
  std::chrono::nanoseconds retry_wait{0};
};

// A finished response: its head (with the call's final attempts and upstream
// time) and its whole body.
struct UpstreamResponse : UpstreamHead {
  std::string body;
};

// How a call's exchanges ended, when they ended with an answer: the figures
// that are only known once the body is read.
struct ExchangeSummary {
  int attempts = 0;  // as UpstreamHead::attempts, final
  std::chrono::nanoseconds upstream_time{0};  // every exchange's, summed
  std::chrono::nanoseconds retry_wait{0};     // waited between answers
};

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code
// points past U+10FFFF): what a proto3 string field may carry.
bool IsValidUtf8(const std::string& s);

// True for the methods HTTP defines as idempotent (RFC 9110, 9.2.2).
bool IsIdempotentMethod(const std::string& method);

// True for header names that belong to one connection (RFC 9110, 7.6.1) or that
// the service itself sets (Host): Connection, Keep-Alive, Proxy-*, TE, Trailer,
// Transfer-Encoding, Upgrade, Host. Case-insensitive.
bool IsServiceOwnedHeader(const std::string& name);

}  // namespace egress
