#include "service/transport/proxy_tunnel.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace egress {
namespace {

using std::chrono::milliseconds;

// Waits for `events` on `fd` until `deadline`; false when it passed.
bool WaitFor(int fd, short events, const Deadline& deadline) {
  for (;;) {
    const auto left = deadline.Remaining();
    if (left <= std::chrono::nanoseconds::zero()) return false;
    pollfd p{fd, events, 0};
    const int ms = static_cast<int>(std::min<int64_t>(
        std::chrono::ceil<milliseconds>(left).count(), 1 << 30));
    const int n = poll(&p, 1, ms);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // the read or write says why
  }
}

TunnelOutcome Failed(std::string detail) {
  TunnelOutcome out;
  out.result = TunnelOutcome::Result::kFailed;
  out.detail = std::move(detail);
  return out;
}

}  // namespace

absl::StatusOr<std::string> UpstreamProxy::Authorization() const {
  if (credentials == nullptr) return std::string();
  absl::StatusOr<std::string> pair = credentials->Value();
  if (!pair.ok()) return pair.status();
  return absl::StrCat("Basic ", absl::Base64Escape(*pair));
}

TunnelOutcome OpenTunnel(int fd, const std::string& authority,
                         const std::string& authorization,
                         const HeadLimits& limits, const Deadline& deadline) {
  std::string request = absl::StrCat("CONNECT ", authority,
                                     " HTTP/1.1\r\nHost: ", authority, "\r\n");
  if (!authorization.empty()) {
    absl::StrAppend(&request, "Proxy-Authorization: ", authorization, "\r\n");
  }
  request += "\r\n";
  for (size_t sent = 0; sent < request.size();) {
    if (!WaitFor(fd, POLLOUT, deadline)) {
      return Failed("the deadline passed sending CONNECT");
    }
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      continue;
    }
    if (n <= 0)
      return Failed(absl::StrCat("sending CONNECT: ", strerror(errno)));
    sent += static_cast<size_t>(n);
  }
  // The answer to CONNECT has no body when it is 2xx (RFC 9110, 9.3.6): the
  // tunnel starts right after the head. Another answer's body is not read.
  ResponseHeadReader reader(limits, /*head_request=*/true);
  char buffer[4096];
  while (!reader.done()) {
    if (!WaitFor(fd, POLLIN, deadline)) {
      return Failed("the deadline passed waiting for the answer to CONNECT");
    }
    const ssize_t n = recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      continue;
    }
    if (n == 0) return Failed("the proxy closed the connection");
    if (n < 0) return Failed(absl::StrCat("reading: ", strerror(errno)));
    absl::Status appended =
        reader.Append(absl::string_view(buffer, static_cast<size_t>(n)));
    if (!appended.ok()) {
      return Failed(
          absl::StrCat("its answer to CONNECT: ", appended.message()));
    }
  }
  const int status = reader.head().status;
  if (status < 200 || status > 299) {
    TunnelOutcome out;
    out.result = TunnelOutcome::Result::kRefused;
    out.proxy_status = status;
    return out;
  }
  if (!reader.rest().empty()) {
    return Failed("bytes after its answer to CONNECT, before TLS began");
  }
  TunnelOutcome out;
  out.result = TunnelOutcome::Result::kOpen;
  out.proxy_status = status;
  return out;
}

}  // namespace egress
