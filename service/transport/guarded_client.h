// GuardedClient: an httplib client, plain (ClientImpl) or TLS (SSLClient),
// whose every exchange runs over an UpstreamStream bound to its owner's
// exchange, and which tells its owner (HttpSession) when the connection is up
// for an exchange and before httplib closes it (for aborts), and lets it
// prepare each TLS handshake. A private header of http_session.cc: the only
// place that names httplib's client types.
//
// Thread safety: as httplib's client, one thread at a time (the owner's).
#pragma once

#include <fcntl.h>
#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>

#include "service/transport/http_session.h"
#include "service/transport/upstream_stream.h"

namespace egress {
namespace internal {

// OpenSSL writes to its socket with write(2), which raises SIGPIPE when the
// upstream has closed the connection (httplib's own writes use MSG_NOSIGNAL).
// The signal is blocked, once, on each thread that sends through a session, so
// that such a write fails with EPIPE instead of ending the process.
inline void BlockSigpipeOnThisThread() {
  static thread_local const bool blocked = [] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    return pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
  }();
  (void)blocked;
}

// What the session reads of its client's connection: the socket, and for
// TLS its SSL. Owner thread only.
class ConnectionView {
 public:
  virtual ~ConnectionView() = default;
  virtual int socket() const = 0;  // -1 when there is no connection
  virtual SSL* ssl() const = 0;    // nullptr for plain HTTP
};

template <class Base>
class GuardedClient final : public Base, public ConnectionView {
 public:
  template <class... Args>
  explicit GuardedClient(ClientOwner& owner, Args&&... args)
      : Base(std::forward<Args>(args)...), owner_(owner) {}

  int socket() const override {
    return this->socket_.is_open() ? static_cast<int>(this->socket_.sock) : -1;
  }
  SSL* ssl() const override {
    if constexpr (std::is_same_v<Base, httplib::SSLClient>) {
      return this->socket_.ssl;
    }
    return nullptr;
  }

 private:
  bool process_socket(const typename Base::Socket& socket,
                      std::function<bool(httplib::Stream&)> callback) override {
    UpstreamExchange& exchange = owner_.exchange();
    // The connection is up, and httplib closes it only on this thread, after
    // shutdown_ssl: an abort may shut this very socket down until then.
    owner_.OnExchangeSocket(static_cast<int>(socket.sock));
    in_exchange_ = true;
    const bool result =
        Base::process_socket(socket, [&](httplib::Stream& inner) {
          exchange.ready_at = exchange.deadline.clock().Now();
          UpstreamStream stream(inner, socket.sock, socket.ssl, exchange,
                                buffer_);
          const bool ok = callback(stream);
          // More than the response framed (or bytes nobody asked for): whatever
          // they are, they must not be read as the next response. (`socket` is
          // the client's own: httplib may have closed it already, for
          // "Connection: close" or HTTP/1.0, and then there is nothing to
          // keep.)
          if (ok && socket.is_open() && stream.HasUnreadBytes()) {
            exchange.leftover = true;
          }
          return ok;
        });
    in_exchange_ = false;
    owner_.OnSocketClosing();
    return result;
  }

  // httplib calls this before each close of the client's socket.
  void shutdown_ssl(typename Base::Socket& socket,
                    bool shutdown_gracefully) override {
    owner_.OnSocketClosing();
    if constexpr (std::is_same_v<Base, httplib::SSLClient>) {
      if (shutdown_gracefully && socket.ssl != nullptr) {
        SendCloseNotify(socket);
        shutdown_gracefully = false;  // sent: nothing more to wait for
      }
    }
    Base::shutdown_ssl(socket, shutdown_gracefully);
  }

  // Sends TLS's close_notify once, without blocking and without waiting for
  // the upstream's: httplib's graceful shutdown waits for the reply, sleeping
  // 100 ms per try, for up to a second, on whichever thread closes the
  // connection (a worker answering a call, the pool's janitor).
  static void SendCloseNotify(typename Base::Socket& socket) {
    BlockSigpipeOnThisThread();
    const int flags = fcntl(socket.sock, F_GETFL);
    fcntl(socket.sock, F_SETFL, flags | O_NONBLOCK);
    SSL_shutdown(socket.ssl);  // a peer that is gone is no error here
    ERR_clear_error();
    fcntl(socket.sock, F_SETFL, flags);
  }

  // Through an upstream proxy, the connection goes to the proxy, and for
  // https becomes a tunnel to the origin before TLS starts (proxy_tunnel.h).
  bool create_and_connect_socket(typename Base::Socket& socket,
                                 httplib::Error& error) override {
    const std::pair<std::string, int>* hop = owner_.ProxyHop();
    if (hop == nullptr) {
      return this->is_valid() &&
             httplib::ClientImpl::create_and_connect_socket(socket, error);
    }
    // The address when the owner resolved it, else the name.
    const socket_t sock = httplib::detail::create_client_socket(
        hop->first, std::string(), hop->second, this->address_family_,
        this->tcp_nodelay_, this->ipv6_v6only_, this->socket_options_,
        this->connection_timeout_sec_, this->connection_timeout_usec_,
        this->read_timeout_sec_, this->read_timeout_usec_,
        this->write_timeout_sec_, this->write_timeout_usec_, this->interface_,
        error);
    if (sock == INVALID_SOCKET) return false;
    if constexpr (std::is_same_v<Base, httplib::SSLClient>) {
      if (!owner_.OpenProxyTunnel(static_cast<int>(sock))) {
        owner_.OnSocketClosing();  // nothing may abort it any more
        ::shutdown(sock, SHUT_RDWR);
        ::close(sock);
        error = httplib::Error::ProxyConnection;
        return false;
      }
    }
    socket.sock = sock;
    return true;
  }

  // httplib asks this before and after writing each request over TLS, and
  // would switch the socket to non-blocking and back (four fcntl) around an
  // SSL_peek each time. After the request (in the exchange), bytes waiting
  // are the response's: a close that came first shows when it is read, and
  // the exchange fails as on a connection closed before any response. Before
  // it, no byte waiting on the socket means no close_notify (nor anything
  // else) arrived: one recv answers, and TLS is asked only when a record is
  // there.
  bool is_ssl_peer_could_be_closed(SSL* ssl) const override {
    if (in_exchange_) return false;
    char byte;
    const ssize_t n = recv(SSL_get_fd(ssl), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    return Base::is_ssl_peer_could_be_closed(ssl);
  }

  void prepare_ssl(SSL* ssl) {
    if constexpr (std::is_same_v<Base, httplib::SSLClient>) {
      owner_.PrepareTls(ssl);
    }
  }

  ClientOwner& owner_;
  std::string buffer_;        // UpstreamStream's, kept between exchanges
  bool in_exchange_ = false;  // within process_socket
};

}  // namespace internal
}  // namespace egress
