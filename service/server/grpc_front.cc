#include "service/server/grpc_front.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <list>
#include <vector>

#include "absl/strings/str_cat.h"
#include "service/base/log.h"
#include "service/server/front_loop.h"
#include "service/server/listen_sockets.h"

namespace egress {

namespace front_internal {

std::string CertificatePem(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return "";
  std::string pem;
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio != nullptr && PEM_write_bio_X509(bio, cert) == 1) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    if (n > 0) pem.assign(data, static_cast<size_t>(n));
  }
  BIO_free(bio);
  X509_free(cert);
  return pem;
}

void Empty(std::string& buffer) {
  if (buffer.capacity() > kReadChunk) {
    std::string().swap(buffer);
  } else {
    buffer.clear();
  }
}

std::string CertKey(absl::string_view peer) {
  const size_t colon = peer.find(':');
  if (colon != absl::string_view::npos) peer.remove_prefix(colon + 1);
  while (!peer.empty() && (peer[0] == '\0' || peer[0] == '@')) {
    peer.remove_prefix(1);
  }
  return std::string(peer);
}

}  // namespace front_internal

using front_internal::CertKey;
using front_internal::Empty;

GrpcFront::Loop::~Loop() {
  for (auto& [ptr, conn] : conns_) {
    metrics_->grpc_connections().Decrement();
    if (conn->ssl != nullptr) SSL_free(conn->ssl);
    if (conn->client.fd >= 0) close(conn->client.fd);
    if (conn->backend.fd >= 0) close(conn->backend.fd);
  }
  CloseListeners();
  if (wake_.fd >= 0) close(wake_.fd);
  if (spare_ >= 0) close(spare_);
  if (epoll_ >= 0) close(epoll_);
}

absl::Status GrpcFront::Loop::Init(std::vector<int> listeners) {
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  wake_.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  spare_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (epoll_ < 0 || wake_.fd < 0) {
    for (int fd : listeners) close(fd);
    return absl::InternalError(
        absl::StrCat("gRPC front: epoll: ", strerror(errno)));
  }
  Register(wake_, EPOLLIN);
  for (int fd : listeners) {
    auto ep = std::make_unique<Endpoint>(Endpoint{Endpoint::Kind::kListener});
    ep->fd = fd;
    Register(*ep, EPOLLIN);
    listeners_.push_back(std::move(ep));
  }
  return absl::OkStatus();
}

void GrpcFront::Loop::Register(Endpoint& ep, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = &ep;
  if (ep.events == 0 && events != 0) {
    epoll_ctl(epoll_, EPOLL_CTL_ADD, ep.fd, &ev);
  } else if (events != ep.events) {
    epoll_ctl(epoll_, events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD, ep.fd, &ev);
  }
  ep.events = events;
}

void GrpcFront::Loop::CloseListeners() {
  for (auto& ep : listeners_) {
    if (ep->fd >= 0) {
      Register(*ep, 0);
      close(ep->fd);
      ep->fd = -1;
    }
  }
}

void GrpcFront::Loop::Run() {
  std::vector<epoll_event> events(256);
  while (!stop_.load()) {
    if (stop_accepting_.load()) CloseListeners();
    if (listeners_paused_until_ != MonoTime{} &&
        RealClock::Get().Now() >= listeners_paused_until_) {
      listeners_paused_until_ = MonoTime{};
      for (auto& ep : listeners_) {
        if (ep->fd >= 0) Register(*ep, EPOLLIN);
      }
    }
    const int n =
        epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 200);
    const MonoTime now = RealClock::Get().Now();
    for (int i = 0; i < n; ++i) {
      Endpoint& ep = *static_cast<Endpoint*>(events[i].data.ptr);
      const uint32_t what = events[i].events;
      switch (ep.kind) {
        case Endpoint::Kind::kWake: {
          uint64_t count;
          (void)!read(ep.fd, &count, sizeof(count));
          break;
        }
        case Endpoint::Kind::kListener:
          if (ep.fd >= 0) Accept(ep);
          break;
        case Endpoint::Kind::kClient:
          if (ep.conn->closed) break;
          if ((what & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
            ClientReadable(*ep.conn);
          }
          // Gone, with no room to read the end: level-triggered epoll would
          // report it again and again.
          if (!ep.conn->closed && (what & (EPOLLHUP | EPOLLERR)) != 0) {
            CloseConn(*ep.conn, ConnectionRefusal::kNone, "");
          }
          if (!ep.conn->closed && (what & EPOLLOUT) != 0) {
            ClientWritable(*ep.conn);
          }
          if (!ep.conn->closed) Update(*ep.conn);
          break;
        case Endpoint::Kind::kBackend:
          if (ep.conn->closed) break;
          if ((what & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
            BackendReadable(*ep.conn);
          }
          if (!ep.conn->closed && (what & (EPOLLHUP | EPOLLERR)) != 0) {
            FlushToClient(*ep.conn);
            if (!ep.conn->closed) {
              CloseConn(*ep.conn, ConnectionRefusal::kNone, "");
            }
          }
          if (!ep.conn->closed && (what & EPOLLOUT) != 0) {
            BackendWritable(*ep.conn);
          }
          if (!ep.conn->closed) Update(*ep.conn);
          break;
      }
    }
    ExpireHandshakes(now);
    graveyard_.clear();
  }
}

void GrpcFront::Loop::Accept(Endpoint& listener) {
  for (int accepted = 0; accepted < 256; ++accepted) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd = accept4(listener.fd, reinterpret_cast<sockaddr*>(&addr),
                           &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && spare_ >= 0) {
        // Out of descriptors: without a way to take the connection off the
        // queue, the listener stays readable and the loop spins. Give up the
        // spare, take the connection and close it, and take the spare back.
        close(spare_);
        const int refused = accept(listener.fd, nullptr, nullptr);
        if (refused >= 0) close(refused);
        spare_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
        metrics_->RecordConnectionRefused(ConnectionRefusal::kDescriptors);
        static std::atomic<int64_t> warned{0};
        if (warned.fetch_add(1) % 1000 == 0) {
          LogWarning(
              "gRPC port: out of file descriptors, refusing callers' "
              "connections (see --max_connections and the descriptor limit)");
        }
        continue;
      }
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        // No spare descriptor either: stop watching the listeners for a
        // moment rather than spin on a listener that stays readable.
        for (auto& ep : listeners_) {
          if (ep->fd >= 0) Register(*ep, 0);
        }
        listeners_paused_until_ =
            RealClock::Get().Now() + defaults::kAcceptPause;
        if (spare_ < 0) spare_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
      }
      return;  // EAGAIN, or an error the next readiness will retry
    }
    const std::string peer = PeerAddress(addr);
    ConnectionRefusal refusal = ConnectionRefusal::kNone;
    if (conns_.size() >= options_.max_connections) {
      refusal = ConnectionRefusal::kMaxConnections;
    } else if (!peer.empty() && options_.max_connections_per_peer > 0 &&
               per_peer_[peer] >= options_.max_connections_per_peer) {
      refusal = ConnectionRefusal::kMaxConnectionsPerPeer;
    }
    if (refusal != ConnectionRefusal::kNone) {
      close(fd);
      metrics_->RecordConnectionRefused(refusal);
      continue;
    }
    if (addr.ss_family != AF_UNIX) {
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    auto owned = std::make_unique<Conn>(options_.guard);
    Conn* conn = owned.get();
    conn->client.fd = fd;
    conn->client.conn = conn;
    conn->backend.conn = conn;
    conn->peer = peer;
    if (!peer.empty()) ++per_peer_[peer];
    conn->deadline = RealClock::Get().Now() + options_.handshake_timeout;
    conn->handshaking = handshaking_.insert(handshaking_.end(), conn);
    conn->in_handshake_list = true;
    if (options_.tls != nullptr) {
      conn->ssl = SSL_new(options_.tls.get());
      if (conn->ssl != nullptr) {
        SSL_set_fd(conn->ssl, fd);
        SSL_set_accept_state(conn->ssl);
        SSL_set_mode(conn->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
      }
    } else {
      conn->tls_done = true;
    }
    conns_.emplace(conn, std::move(owned));
    metrics_->grpc_connections().Increment();
    Update(*conn);
  }
}

void GrpcFront::Loop::CloseConn(Conn& conn, ConnectionRefusal reason,
                                const std::string& detail) {
  if (conn.closed) return;
  conn.closed = true;
  if (reason != ConnectionRefusal::kNone) {
    metrics_->RecordConnectionRefused(reason);
    LogWarning(absl::StrCat("gRPC port: closed a connection from ",
                            conn.peer.empty() ? "a Unix socket" : conn.peer,
                            " (", ConnectionRefusalName(reason),
                            "): ", detail));
  }
  LeaveHandshakeList(conn);
  if (!conn.peer.empty()) {
    auto it = per_peer_.find(conn.peer);
    if (it != per_peer_.end() && --it->second == 0) per_peer_.erase(it);
  }
  if (!conn.cert_key.empty()) {
    std::lock_guard<std::mutex> lock(front_.certs_mu_);
    front_.certs_.erase(conn.cert_key);
  }
  Register(conn.client, 0);
  Register(conn.backend, 0);
  if (conn.ssl != nullptr) {
    SSL_free(conn.ssl);
    conn.ssl = nullptr;
  }
  close(conn.client.fd);
  if (conn.backend.fd >= 0) close(conn.backend.fd);
  conn.client.fd = conn.backend.fd = -1;
  metrics_->grpc_connections().Decrement();
  auto it = conns_.find(&conn);
  graveyard_.push_back(std::move(it->second));
  conns_.erase(it);
}

void GrpcFront::Loop::LeaveHandshakeList(Conn& conn) {
  if (!conn.in_handshake_list) return;
  handshaking_.erase(conn.handshaking);
  conn.in_handshake_list = false;
}

void GrpcFront::Loop::ExpireHandshakes(MonoTime now) {
  while (!handshaking_.empty() && handshaking_.front()->deadline <= now) {
    Conn& conn = *handshaking_.front();
    CloseConn(conn, ConnectionRefusal::kHandshakeTimeout,
              conn.tls_done ? "no HTTP/2 preface in --handshake_timeout"
                            : "no TLS handshake in --handshake_timeout");
  }
}

void GrpcFront::Loop::Update(Conn& conn) {
  uint32_t client = 0;
  uint32_t backend = 0;
  const size_t waiting_in = conn.to_backend.size() - conn.to_backend_at;
  const size_t waiting_out = conn.to_client.size() - conn.to_client_at;
  if (!conn.tls_done) {
    client = conn.handshake_wants_write ? EPOLLOUT : EPOLLIN;
  } else {
    // A caller that does not read its answers is not read either: what it
    // sends would only make gRPC queue more answers.
    if ((waiting_in < defaults::kFrontHighWater &&
         waiting_out < defaults::kFrontHighWater) ||
        conn.ssl_write_wants_read) {
      client |= EPOLLIN;
    }
    if (waiting_out > 0 || conn.ssl_read_wants_write) client |= EPOLLOUT;
  }
  if (conn.backend.fd >= 0) {
    if (waiting_out < defaults::kFrontHighWater) backend |= EPOLLIN;
    if (waiting_in > 0) backend |= EPOLLOUT;
  }
  Register(conn.client, client);
  if (conn.backend.fd >= 0) Register(conn.backend, backend);
}

absl::StatusOr<std::unique_ptr<GrpcFront>> GrpcFront::Start(
    const GrpcFrontOptions& options, Metrics* metrics) {
  absl::StatusOr<std::vector<int>> listeners = BindListen(options.listen);
  if (!listeners.ok()) return listeners.status();
  std::unique_ptr<GrpcFront> front(new GrpcFront());
  front->port_ = listeners->empty() ? 0 : BoundPort(listeners->front());
  front->loop_ = std::make_unique<Loop>(*front, options, metrics);
  absl::Status init = front->loop_->Init(*std::move(listeners));
  if (!init.ok()) return init;
  front->thread_ = std::thread([loop = front->loop_.get()] { loop->Run(); });
  return front;
}

GrpcFront::~GrpcFront() { Close(); }

void GrpcFront::StopAccepting() {
  if (loop_ != nullptr) loop_->RequestStopAccepting();
}

void GrpcFront::Close() {
  if (closed_) return;
  closed_ = true;
  if (loop_ != nullptr) loop_->RequestStop();
  if (thread_.joinable()) thread_.join();
  loop_.reset();
}

std::string GrpcFront::PeerCertificate(const std::string& grpc_peer) const {
  std::lock_guard<std::mutex> lock(certs_mu_);
  auto it = certs_.find(CertKey(grpc_peer));
  return it == certs_.end() ? "" : it->second;
}

}  // namespace egress
