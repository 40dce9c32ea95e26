#include "service/admission/request_validation.h"

#include <google/protobuf/util/time_util.h>

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
#include "service/base/defaults.h"
#include "service/base/error_details.h"
#include "service/base/url.h"

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

}  // namespace

bool IsHttpToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

absl::StatusOr<UpstreamRequest> ParseUrl(absl::string_view url,
                                         const ValidationLimits& limits) {
  absl::StatusOr<UpstreamRequest> request =
      ParseRequestUrl(url, limits.max_url_bytes);
  if (!request.ok()) return Invalid("url", request.status().message());
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
    if (retry.max_attempts() < 0 ||
        retry.max_attempts() > defaults::kMaxRetryAttempts) {
      return Invalid(
          "retry.max_attempts",
          absl::StrFormat("is %d; must be 0 to %d", retry.max_attempts(),
                          defaults::kMaxRetryAttempts));
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
