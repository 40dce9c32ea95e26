// Request validation: turns a caller's DoRequest into an UpstreamRequest
// that is safe to put on the wire, or explains precisely why it is refused.
//
// Every refusal is INVALID_ARGUMENT (RESOURCE_EXHAUSTED for a body over the
// limit) with a message that starts with the field at fault, for example
//   url: unsupported scheme "ftp"; use http://
//   headers[2]: "Connection" is a hop-by-hop header owned by the service
//
// Usage:
//   absl::StatusOr<UpstreamRequest> req = ValidateRequest(proto, limits);
//   if (!req.ok()) return req.status();
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/egress/v1/egress.pb.h"
#include "service/base/defaults.h"
#include "service/base/http_types.h"

namespace egress {

struct ValidationLimits {
  size_t max_request_bytes = defaults::kMaxRequestBytes;
  size_t max_url_bytes = defaults::kMaxUrlBytes;
  size_t max_headers = defaults::kMaxRequestHeaders;
  // Names and values of all headers together.
  size_t max_header_bytes = defaults::kMaxRequestHeaderBytes;
};

// Parses an absolute http:// or https:// URL into its origin and request target
// (path and query, fragment removed). Refuses user info, control characters,
// spaces, non-ASCII bytes, bad hosts and ports outside 1-65535.
absl::StatusOr<UpstreamRequest> ParseUrl(absl::string_view url,
                                         const ValidationLimits& limits);

// Validates the whole request: method, URL, headers, body size and timeout.
// The body is copied from a const request; a valid rvalue one gives its body
// up (moved, not copied).
absl::StatusOr<UpstreamRequest> ValidateRequest(
    const egress::v1::DoRequest& request, const ValidationLimits& limits);
absl::StatusOr<UpstreamRequest> ValidateRequest(egress::v1::DoRequest&& request,
                                                const ValidationLimits& limits);

// True when `s` is a non-empty RFC 9110 token (methods and header names).
bool IsHttpToken(absl::string_view s);

}  // namespace egress
