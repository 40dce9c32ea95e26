// Listening sockets for --listen and the addresses of peers: the socket
// work of GrpcFront, apart from its event loop.
//
// Thread safety: pure functions (plain system calls).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace egress {

// The listening sockets (non-blocking, close-on-exec) for `listen`, as
// --listen spells it ("host:port", "[::]:port", "unix:/path",
// "unix-abstract:name"; port 0 picks one, the same for every address), or an
// error naming it.
absl::StatusOr<std::vector<int>> BindListen(const std::string& listen);

// The TCP port `fd` is bound to; 0 for Unix sockets.
int BoundPort(int fd);

// A Unix socket address for `name`; an abstract one when `abstract`. Returns
// the address's length.
socklen_t UnixAddress(const std::string& name, bool abstract, sockaddr_un& un);

// The IP address of a peer, as text; empty for Unix sockets.
std::string PeerAddress(const sockaddr_storage& addr);

}  // namespace egress
