// GrpcFront's relay: each connection's TLS handshake, its connection to
// gRPC's listener, and its bytes in both directions through the H2Guard,
// never more than defaults::kFrontHighWater waiting per direction.
#include <errno.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "service/base/log.h"
#include "service/server/front_loop.h"
#include "service/server/listen_sockets.h"

namespace egress {

using front_internal::CertificatePem;
using front_internal::Empty;
using front_internal::kReadChunk;

bool GrpcFront::Loop::TlsHandshake(Conn& conn) {
  if (conn.ssl == nullptr) {
    CloseConn(conn, ConnectionRefusal::kTlsHandshake, "SSL_new failed");
    return false;
  }
  const int rc = SSL_do_handshake(conn.ssl);
  if (rc == 1) {
    conn.tls_done = true;
    conn.handshake_wants_write = false;
    return true;
  }
  const int error = SSL_get_error(conn.ssl, rc);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    conn.handshake_wants_write = error == SSL_ERROR_WANT_WRITE;
    return true;
  }
  char reason[256] = "";
  ERR_error_string_n(ERR_peek_last_error(), reason, sizeof(reason));
  ERR_clear_error();
  CloseConn(conn, ConnectionRefusal::kTlsHandshake, reason);
  return false;
}

bool GrpcFront::Loop::ConnectBackend(Conn& conn) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    CloseConn(conn, ConnectionRefusal::kDescriptors, strerror(errno));
    return false;
  }
  conn.backend.fd = fd;
  if (conn.ssl != nullptr) {
    std::string pem = CertificatePem(conn.ssl);
    if (!pem.empty()) {
      // gRPC names the call's peer by this socket's address: bind a unique
      // one, under which the certificate waits for CallerAuth.
      const std::string name = absl::StrCat(options_.backend, "-c", ++serial_);
      sockaddr_un un;
      const socklen_t len = UnixAddress(name, true, un);
      if (bind(fd, reinterpret_cast<sockaddr*>(&un), len) != 0) {
        CloseConn(conn, ConnectionRefusal::kBackend,
                  absl::StrCat("bind: ", strerror(errno)));
        return false;
      }
      conn.cert_key = name;
      std::lock_guard<std::mutex> lock(front_.certs_mu_);
      front_.certs_[name] = std::move(pem);
    }
  }
  sockaddr_un un;
  const socklen_t len = UnixAddress(options_.backend, true, un);
  if (connect(fd, reinterpret_cast<sockaddr*>(&un), len) != 0 &&
      errno != EINPROGRESS) {
    CloseConn(conn, ConnectionRefusal::kBackend,
              absl::StrCat("connect to gRPC's listener: ", strerror(errno)));
    return false;
  }
  return true;
}

void GrpcFront::Loop::ClientReadable(Conn& conn) {
  if (!conn.tls_done) {
    if (!TlsHandshake(conn) || !conn.tls_done) return;
  }
  if (conn.ssl_write_wants_read) {
    conn.ssl_write_wants_read = false;
    if (!FlushToClient(conn)) return;
  }
  char buf[kReadChunk];
  // Read while there is room; with TLS, also what OpenSSL has decrypted.
  while (
      conn.to_backend.size() - conn.to_backend_at < defaults::kFrontHighWater &&
      conn.to_client.size() - conn.to_client_at < defaults::kFrontHighWater) {
    ssize_t n;
    if (conn.ssl != nullptr) {
      conn.ssl_read_wants_write = false;
      const int rc = SSL_read(conn.ssl, buf, sizeof(buf));
      if (rc > 0) {
        n = rc;
      } else {
        const int error = SSL_get_error(conn.ssl, rc);
        ERR_clear_error();
        if (error == SSL_ERROR_WANT_READ) return;
        if (error == SSL_ERROR_WANT_WRITE) {
          conn.ssl_read_wants_write = true;
          return;
        }
        CloseConn(conn, ConnectionRefusal::kNone, "");
        return;
      }
    } else {
      n = read(conn.client.fd, buf, sizeof(buf));
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      if (n <= 0) {
        CloseConn(conn, ConnectionRefusal::kNone, "");
        return;
      }
    }
    const MonoTime now = RealClock::Get().Now();
    if (!conn.guard.Inspect(absl::string_view(buf, static_cast<size_t>(n)),
                            now)) {
      CloseConn(conn, conn.guard.refusal(), conn.guard.detail());
      return;
    }
    conn.to_backend.append(buf, static_cast<size_t>(n));
    if (conn.backend.fd < 0) {
      if (!conn.guard.preface_done()) continue;
      LeaveHandshakeList(conn);
      if (!ConnectBackend(conn)) return;
    }
    if (!FlushToBackend(conn)) return;
    // A short read emptied the socket: epoll says when there is more, and
    // a read that would only say EAGAIN is saved (a call's request is
    // usually one read). OpenSSL's reads end at a record, so not with TLS.
    if (conn.ssl == nullptr && static_cast<size_t>(n) < sizeof(buf)) return;
  }
}

bool GrpcFront::Loop::FlushToBackend(Conn& conn) {
  while (conn.to_backend_at < conn.to_backend.size()) {
    const ssize_t n =
        send(conn.backend.fd, conn.to_backend.data() + conn.to_backend_at,
             conn.to_backend.size() - conn.to_backend_at, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ENOTCONN) return true;
      CloseConn(conn, ConnectionRefusal::kNone, "");
      return false;
    }
    conn.to_backend_at += static_cast<size_t>(n);
  }
  Empty(conn.to_backend);
  conn.to_backend_at = 0;
  return true;
}

bool GrpcFront::Loop::FlushToClient(Conn& conn) {
  while (conn.to_client_at < conn.to_client.size()) {
    const char* data = conn.to_client.data() + conn.to_client_at;
    const size_t size = conn.to_client.size() - conn.to_client_at;
    ssize_t n;
    if (conn.ssl != nullptr) {
      conn.ssl_write_wants_read = false;
      const int rc = SSL_write(conn.ssl, data, static_cast<int>(size));
      if (rc > 0) {
        n = rc;
      } else {
        const int error = SSL_get_error(conn.ssl, rc);
        ERR_clear_error();
        if (error == SSL_ERROR_WANT_WRITE) return true;
        if (error == SSL_ERROR_WANT_READ) {
          conn.ssl_write_wants_read = true;
          return true;
        }
        CloseConn(conn, ConnectionRefusal::kNone, "");
        return false;
      }
    } else {
      n = send(conn.client.fd, data, size, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return true;
        CloseConn(conn, ConnectionRefusal::kNone, "");
        return false;
      }
    }
    conn.to_client_at += static_cast<size_t>(n);
  }
  Empty(conn.to_client);
  conn.to_client_at = 0;
  return true;
}

void GrpcFront::Loop::ClientWritable(Conn& conn) {
  if (!conn.tls_done) {
    // Done now: the caller's first bytes may already be decrypted.
    if (TlsHandshake(conn) && conn.tls_done) ClientReadable(conn);
    return;
  }
  if (conn.ssl_read_wants_write) {
    ClientReadable(conn);
    if (conn.closed) return;
  }
  if (!FlushToClient(conn)) return;
  // Room again: read what gRPC has waiting, and what the caller sent (OpenSSL
  // may hold some already decrypted, which epoll cannot see).
  if (conn.to_client_at == conn.to_client.size()) {
    BackendReadable(conn);
    if (!conn.closed && conn.ssl != nullptr && SSL_pending(conn.ssl) > 0) {
      ClientReadable(conn);
    }
  }
}

void GrpcFront::Loop::BackendReadable(Conn& conn) {
  char buf[kReadChunk];
  while (conn.to_client.size() - conn.to_client_at <
         defaults::kFrontHighWater) {
    const ssize_t n = read(conn.backend.fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
      // gRPC closed the connection (GOAWAY sent, idle or shutting down):
      // pass on what is left, then close the caller's side too.
      FlushToClient(conn);
      if (!conn.closed) CloseConn(conn, ConnectionRefusal::kNone, "");
      return;
    }
    conn.guard.ServerBytes(absl::string_view(buf, static_cast<size_t>(n)));
    conn.to_client.append(buf, static_cast<size_t>(n));
    if (!FlushToClient(conn)) return;
    if (static_cast<size_t>(n) < sizeof(buf)) return;  // emptied, as above
  }
}

void GrpcFront::Loop::BackendWritable(Conn& conn) {
  if (!FlushToBackend(conn)) return;
  // Room again: read what the caller has waiting (OpenSSL may hold some
  // already decrypted, which epoll cannot see).
  if (conn.to_backend_at == conn.to_backend.size()) ClientReadable(conn);
}

}  // namespace egress
