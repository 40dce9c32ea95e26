#include "service/admission/request_validation.h"

#include <arpa/inet.h>
#include <google/protobuf/util/time_util.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "service/pool/answer_retry.h"
#include "service/base/error_details.h"

namespace egress {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return WithFieldViolation(
      absl::InvalidArgumentError(absl::StrCat(field, ": ", problem)), field);
}

// A well-formed, non-negative Duration in nanoseconds, anything beyond a year
// clamped to a year (every limit is far lower, and nanoseconds in int64
// overflow after 292 years); nullopt otherwise.
std::optional<std::chrono::nanoseconds> ToNanoseconds(
    google::protobuf::Duration d) {
  using google::protobuf::util::TimeUtil;
  if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() > 999999999 ||
      d.seconds() > TimeUtil::kDurationMaxSeconds) {
    return std::nullopt;
  }
  const google::protobuf::Duration year =
      TimeUtil::SecondsToDuration(365LL * 24 * 3600);
  if (d > year) d = year;
  return std::chrono::nanoseconds(TimeUtil::DurationToNanoseconds(d));
}

bool IsTokenChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

// A DNS name or IPv4 literal: letters, digits, '-', '_' and non-empty labels
// separated by dots, at most 253 bytes.
absl::Status ValidateRegName(absl::string_view host) {
  if (host.size() > 253) return Invalid("url", "host is longer than 253 bytes");
  size_t label = 0;
  for (size_t i = 0; i <= host.size(); ++i) {
    if (i == host.size() || host[i] == '.') {
      // A single trailing dot (fully qualified name) is allowed.
      if (label == 0 && !(i == host.size() && i > 0)) {
        return Invalid("url",
                       absl::StrFormat("host \"%s\" has an empty label", host));
      }
      if (label > 63) {
        return Invalid(
            "url",
            absl::StrFormat("host \"%s\" has a label over 63 bytes", host));
      }
      label = 0;
      continue;
    }
    char c = host[i];
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_') {
      return Invalid(
          "url", absl::StrFormat("host \"%s\" has an invalid character '%c'",
                                 host, c));
    }
    ++label;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint16_t> ParsePort(absl::string_view text) {
  if (text.empty()) return Invalid("url", "port is empty after ':'");
  if (text.size() > 5 || !std::all_of(text.begin(), text.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    return Invalid(
        "url", absl::StrFormat("port \"%s\" is not a number in 1-65535", text));
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text, &port) || port < 1 || port > 65535) {
    return Invalid("url",
                   absl::StrFormat("port %s is out of range 1-65535", text));
  }
  return static_cast<uint16_t>(port);
}

// Hosts that inet_aton reads as an IPv4 address, in any of its legacy spellings
// ("2130706433", "0x7f.1", "0177.0.0.1", "127.1"), are that address: resolvers
// and browsers read them so too, and the policy must see the real destination.
std::optional<std::string> CanonicalIpv4(absl::string_view host) {
  const bool numeric = std::all_of(host.begin(), host.end(), [](char c) {
    return absl::ascii_isxdigit(static_cast<unsigned char>(c)) || c == '.' ||
           c == 'x' || c == 'X';
  });
  if (!numeric) return std::nullopt;
  in_addr addr;
  const std::string copy(host);
  if (inet_aton(copy.c_str(), &addr) == 0) return std::nullopt;
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &addr, text, sizeof(text));
  return std::string(text);
}

absl::Status ParseAuthority(absl::string_view authority, Origin& origin) {
  if (authority.empty()) return Invalid("url", "has no host");
  if (authority.find('@') != absl::string_view::npos) {
    return Invalid("url",
                   "user info (user:password@) is not allowed; send an "
                   "Authorization header instead");
  }
  absl::string_view host;
  absl::string_view rest;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return Invalid("url", "IPv6 address is missing its closing ']'");
    }
    host = authority.substr(1, close - 1);
    rest = authority.substr(close + 1);
    in6_addr addr;
    std::string host_copy(host);
    if (inet_pton(AF_INET6, host_copy.c_str(), &addr) != 1) {
      return Invalid("url",
                     absl::StrFormat("\"[%s]\" is not an IPv6 address", host));
    }
    if (!rest.empty() && rest.front() != ':') {
      return Invalid("url", "unexpected characters after the IPv6 address");
    }
    // One spelling per address: "::ffff:127.0.0.1" and "::ffff:7f00:1" are the
    // same destination for the policy and the session cache.
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(AF_INET6, &addr, text, sizeof(text));
    origin.host = text;
  } else {
    size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    rest = colon == absl::string_view::npos ? absl::string_view()
                                            : authority.substr(colon);
    if (host.empty()) return Invalid("url", "has no host");
    absl::Status status = ValidateRegName(host);
    if (!status.ok()) return status;
    // One spelling per host, decided once here: "Example.COM." is
    // "example.com" for the policy, the session cache, DNS, the Host header,
    // SNI and the certificate check alike.
    absl::ConsumeSuffix(&host, ".");
    origin.host = CanonicalIpv4(host).value_or(absl::AsciiStrToLower(host));
  }
  if (rest.empty()) {
    origin.port = origin.scheme == "https" ? 443 : 80;
  } else {
    absl::StatusOr<uint16_t> port = ParsePort(rest.substr(1));
    if (!port.ok()) return port.status();
    origin.port = *port;
  }
  return absl::OkStatus();
}

}  // namespace

bool IsHttpToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

absl::StatusOr<UpstreamRequest> ParseUrl(absl::string_view url,
                                         const ValidationLimits& limits) {
  if (url.empty()) return Invalid("url", "is empty");
  if (url.size() > limits.max_url_bytes) {
    return Invalid("url", absl::StrFormat("is %d bytes, over the limit of %d",
                                          url.size(), limits.max_url_bytes));
  }
  for (size_t i = 0; i < url.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(url[i]);
    if (c <= 0x20 || c == 0x7f) {
      return Invalid("url",
                     absl::StrFormat("contains a space or control character "
                                     "(0x%02x) at offset %d",
                                     c, i));
    }
    if (c >= 0x80) {
      return Invalid("url",
                     absl::StrFormat("contains a non-ASCII byte at offset %d; "
                                     "percent-encode it",
                                     i));
    }
  }
  size_t scheme_end = url.find("://");
  if (scheme_end == absl::string_view::npos) {
    return Invalid("url", "must be absolute, like http://host/path");
  }
  std::string scheme = absl::AsciiStrToLower(url.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") {
    return Invalid(
        "url",
        absl::StrFormat("unsupported scheme \"%s\"; use http:// or https://",
                        scheme));
  }
  absl::string_view rest = url.substr(scheme_end + 3);
  size_t authority_end = rest.find_first_of("/?#");
  UpstreamRequest request;
  request.origin.scheme = std::move(scheme);
  absl::Status status =
      ParseAuthority(rest.substr(0, authority_end), request.origin);
  if (!status.ok()) return status;

  absl::string_view target = authority_end == absl::string_view::npos
                                 ? absl::string_view()
                                 : rest.substr(authority_end);
  target =
      target.substr(0, target.find('#'));  // fragments stay with the caller
  if (target.empty() || target.front() == '?') {
    request.target = absl::StrCat("/", target);
  } else {
    request.target = std::string(target);
  }
  return request;
}

namespace {

// Validates everything, fills everything but the body.
absl::StatusOr<UpstreamRequest> ValidateAllButBody(
    const egress::v1::DoRequest& proto, const ValidationLimits& limits) {
  std::string method = proto.method().empty() ? "GET" : proto.method();
  if (!IsHttpToken(method) || method.size() > 32) {
    return Invalid("method",
                   absl::StrFormat("\"%s\" is not an HTTP method token",
                                   absl::CHexEscape(method.substr(0, 40))));
  }
  if (method == "CONNECT") {
    return Invalid("method", "CONNECT tunnels are not supported");
  }

  absl::StatusOr<UpstreamRequest> request = ParseUrl(proto.url(), limits);
  if (!request.ok()) return request.status();
  request->method = std::move(method);

  if (static_cast<size_t>(proto.headers_size()) > limits.max_headers) {
    return Invalid("headers",
                   absl::StrFormat("%d headers, over the limit of %d",
                                   proto.headers_size(), limits.max_headers));
  }
  size_t header_bytes = 0;
  request->headers.reserve(proto.headers_size());
  for (int i = 0; i < proto.headers_size(); ++i) {
    const egress::v1::Header& header = proto.headers(i);
    std::string field = absl::StrCat("headers[", i, "]");
    if (!IsHttpToken(header.name())) {
      return Invalid(field, absl::StrFormat(
                                "name \"%s\" is not an HTTP token",
                                absl::CHexEscape(header.name().substr(0, 64))));
    }
    // raw_value, when set, is the value: bytes that are not UTF-8.
    const std::string& value =
        header.raw_value().empty() ? header.value() : header.raw_value();
    if (value.find_first_of(std::string("\r\n\0", 3)) != std::string::npos) {
      return Invalid(field,
                     absl::StrFormat("value of \"%s\" contains CR, LF or NUL",
                                     header.name()));
    }
    if (IsServiceOwnedHeader(header.name())) {
      return Invalid(field,
                     absl::StrFormat("\"%s\" is a hop-by-hop header owned by "
                                     "the service",
                                     header.name()));
    }
    header_bytes += header.name().size() + value.size();
    if (header_bytes > limits.max_header_bytes) {
      return Invalid("headers",
                     absl::StrFormat("total size is over the limit of %d bytes",
                                     limits.max_header_bytes));
    }
    if (absl::EqualsIgnoreCase(header.name(), "Content-Length")) {
      // The service frames the body itself; a matching value is harmless, a
      // different one would desynchronise the connection.
      uint64_t length = 0;
      if (!absl::SimpleAtoi(value, &length) || length != proto.body().size()) {
        return Invalid(
            field,
            absl::StrFormat("Content-Length \"%s\" does not match the "
                            "body's %d bytes",
                            absl::CHexEscape(value), proto.body().size()));
      }
      continue;
    }
    request->headers.emplace_back(header.name(), value);
  }

  if (proto.body().size() > limits.max_request_bytes) {
    return WithReason(absl::ResourceExhaustedError(absl::StrFormat(
                          "body: %d bytes, over --max_request_bytes=%d",
                          proto.body().size(), limits.max_request_bytes)),
                      ErrorReason::kRequestTooLarge,
                      {{"limit", absl::StrCat("--max_request_bytes=",
                                              limits.max_request_bytes)}});
  }

  if (proto.has_timeout()) {
    std::optional<std::chrono::nanoseconds> t = ToNanoseconds(proto.timeout());
    if (!t) return Invalid("timeout", "must be a non-negative duration");
    request->timeout = *t;
    if (request->timeout.count() == 0) {
      return Invalid("timeout", "must be positive when set");
    }
  }

  if (proto.has_retry()) {
    const egress::v1::RetryPolicy& retry = proto.retry();
    if (retry.max_attempts() < 0 || retry.max_attempts() > kMaxRetryAttempts) {
      return Invalid("retry.max_attempts",
                     absl::StrFormat("is %d; must be 0 to %d",
                                     retry.max_attempts(), kMaxRetryAttempts));
    }
    request->retry.max_attempts = std::max(1, retry.max_attempts());
    if (retry.has_max_wait()) {
      request->retry.max_wait = ToNanoseconds(retry.max_wait());
      if (!request->retry.max_wait) {
        return Invalid("retry.max_wait", "must be a duration of 0 to a year");
      }
    }
  }
  return request;
}

}  // namespace

absl::StatusOr<UpstreamRequest> ValidateRequest(
    const egress::v1::DoRequest& proto, const ValidationLimits& limits) {
  absl::StatusOr<UpstreamRequest> request = ValidateAllButBody(proto, limits);
  if (request.ok()) request->body = proto.body();
  return request;
}

absl::StatusOr<UpstreamRequest> ValidateRequest(
    egress::v1::DoRequest&& proto, const ValidationLimits& limits) {
  absl::StatusOr<UpstreamRequest> request = ValidateAllButBody(proto, limits);
  if (request.ok()) request->body = std::move(*proto.mutable_body());
  return request;
}

}  // namespace egress
