// URLs and origins as egress reads them: one parser, so that a request's
// origin and every setting that names origins (--metrics_origins) spell the
// same destination the same way. Hosts are canonical: lower case, no
// trailing dot, IPv4 in its dotted-quad form whatever legacy spelling
// inet_aton accepts ("0x7f.1", "2130706433"), IPv6 in its one inet_ntop
// spelling; the port is always set (80, 443 by default).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/base/http_types.h"

namespace egress {

// An absolute http:// or https:// URL: its origin and request target (path
// and query, fragment removed). Refuses user info, control characters,
// spaces, non-ASCII bytes, bad hosts, ports outside 1-65535 and URLs over
// `max_url_bytes`. INVALID_ARGUMENT naming the problem (without a field).
absl::StatusOr<UpstreamRequest> ParseRequestUrl(absl::string_view url,
                                                size_t max_url_bytes);

// An origin, "scheme://host[:port]" with at most a trailing "/", canonical
// as a request's is.
absl::StatusOr<Origin> ParseOrigin(absl::string_view text);

}  // namespace egress
