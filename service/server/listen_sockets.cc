#include "service/server/listen_sockets.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace egress {
namespace {

absl::Status ListenError(const std::string& listen, const std::string& what) {
  return absl::UnavailableError(absl::StrCat("--listen=", listen, ": ", what));
}

int ListenOn(const sockaddr* addr, socklen_t len) {
  const int fd =
      socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  if (addr->sa_family != AF_UNIX) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  }
  if (bind(fd, addr, len) != 0 || listen(fd, SOMAXCONN) != 0) {
    const int error = errno;
    close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

}  // namespace

int BoundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  }
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  }
  return 0;
}

// A Unix socket address; an abstract one when `abstract`.
socklen_t UnixAddress(const std::string& name, bool abstract, sockaddr_un& un) {
  un = sockaddr_un{};
  un.sun_family = AF_UNIX;
  const size_t offset = abstract ? 1 : 0;
  const size_t n = std::min(name.size(), sizeof(un.sun_path) - 1 - offset);
  std::memcpy(un.sun_path + offset, name.data(), n);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + offset + n +
                                (abstract ? 0 : 1));
}

// The listening sockets for `listen`, or an error naming it.
absl::StatusOr<std::vector<int>> BindListen(const std::string& listen) {
  std::vector<int> fds;
  absl::string_view rest = listen;
  if (absl::ConsumePrefix(&rest, "unix-abstract:") ||
      absl::ConsumePrefix(&rest, "unix:")) {
    const bool abstract = absl::StartsWith(listen, "unix-abstract:");
    const std::string path(rest);
    if (path.empty()) return ListenError(listen, "no socket path");
    if (!abstract) unlink(path.c_str());  // a socket left by a previous run
    sockaddr_un un;
    const socklen_t len = UnixAddress(path, abstract, un);
    const int fd = ListenOn(reinterpret_cast<sockaddr*>(&un), len);
    if (fd < 0) return ListenError(listen, strerror(errno));
    fds.push_back(fd);
    return fds;
  }
  absl::ConsumePrefix(&rest, "dns:");
  absl::ConsumePrefix(&rest, "ipv4:");
  absl::ConsumePrefix(&rest, "ipv6:");
  absl::ConsumePrefix(&rest, "//");
  const size_t colon = rest.rfind(':');
  if (colon == absl::string_view::npos) {
    return ListenError(listen, "expected host:port");
  }
  std::string host(rest.substr(0, colon));
  const std::string port(rest.substr(colon + 1));
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  int port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number < 0 ||
      port_number > 65535) {
    return ListenError(listen, "the port is not a number from 0 to 65535");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(),
                             port.c_str(), &hints, &found);
  if (rc != 0) return ListenError(listen, gai_strerror(rc));
  int bound_port = port_number;
  std::string last_error = "no address";
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    sockaddr_storage addr{};
    std::memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    // With port 0 every address gets the port the first one got.
    if (addr.ss_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&addr)->sin_port =
          htons(static_cast<uint16_t>(bound_port));
    } else if (addr.ss_family == AF_INET6) {
      reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port =
          htons(static_cast<uint16_t>(bound_port));
    }
    const int fd = ListenOn(reinterpret_cast<sockaddr*>(&addr), ai->ai_addrlen);
    if (fd < 0) {
      last_error = strerror(errno);
      continue;
    }
    if (bound_port == 0) bound_port = BoundPort(fd);
    fds.push_back(fd);
  }
  freeaddrinfo(found);
  if (fds.empty()) {
    return ListenError(listen, absl::StrCat("cannot listen: ", last_error));
  }
  return fds;
}

std::string PeerAddress(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr,
              text, sizeof(text));
  } else if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6,
              &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, text,
              sizeof(text));
  }
  return text;  // empty for Unix sockets: no per-peer limit
}

}  // namespace egress
