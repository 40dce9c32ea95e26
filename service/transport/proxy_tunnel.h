// Upstream proxies: an origin entry may send its calls through an HTTP proxy
// (Squid, tinyproxy, a corporate gateway).
//
// - Plain http: the session's connection goes to the proxy, and each request
//   is sent in absolute form ("GET http://host/path"), with the proxy's
//   credentials; the connection is kept alive like any other.
// - https: the session's connection goes to the proxy, which is asked for a
//   tunnel to the origin (CONNECT host:port); TLS runs inside the tunnel, so
//   the tunnel lives as long as the pooled session. OpenTunnel does that
//   exchange itself, on the raw socket, under the response-head limits and
//   the call's deadline (not httplib's unbounded CONNECT reader): a proxy is
//   an upstream too.
//
// Thread safety: UpstreamProxy is immutable (its credentials file is
// thread-safe); OpenTunnel runs on the calling thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "service/base/deadline.h"
#include "service/base/secret_file.h"
#include "service/transport/response_head.h"

namespace egress {

struct UpstreamProxy {
  std::string host;  // a name or an address literal
  uint16_t port = 0;
  std::string url;  // "http://proxy.corp:3128", for messages and metadata
  // "user:password", sent as Proxy-Authorization Basic; nullptr: none.
  std::shared_ptr<const SecretFile> credentials;

  // The Proxy-Authorization value ("Basic ..."), "" without credentials;
  // FAILED_PRECONDITION when the credentials file cannot be read.
  absl::StatusOr<std::string> Authorization() const;
};

// How a tunnel request ended.
struct TunnelOutcome {
  enum class Result {
    kOpen,     // 2xx: the socket is now a tunnel to the origin
    kRefused,  // the proxy answered with another status
    kFailed,   // closed, reset, timed out, or answered what HTTP does not allow
  };
  Result result = Result::kFailed;
  int proxy_status = 0;  // kRefused: the proxy's status
  std::string detail;    // kFailed: what went wrong; kRefused: the reason
};

// Asks the proxy connected on `fd` (blocking) for a tunnel to `authority`
// ("host:port"), sending `authorization` when not empty, and reads its answer
// under `limits` until `deadline`. Reads nothing past the answer's head.
TunnelOutcome OpenTunnel(int fd, const std::string& authority,
                         const std::string& authorization,
                         const HeadLimits& limits, const Deadline& deadline);

}  // namespace egress
