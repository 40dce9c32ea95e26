#include "service/server/grpc_front.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
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
#include <cstring>
#include <list>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "service/base/log.h"

namespace egress {

// One side of a relayed connection (or a listener, or the wake-up eventfd),
// as registered with epoll.
struct GrpcFront::Endpoint {
  enum class Kind { kListener, kWake, kClient, kBackend };
  Kind kind;
  int fd = -1;
  Conn* conn = nullptr;
  uint32_t events = 0;  // registered with epoll
};

struct GrpcFront::Conn {
  explicit Conn(const H2GuardLimits& limits) : guard(limits) {}
  Endpoint client{Endpoint::Kind::kClient};
  Endpoint backend{Endpoint::Kind::kBackend};
  std::string peer;   // the caller's address, for the per-peer limit
  MonoTime deadline;  // of the handshake (TLS and preface)
  H2Guard guard;
  SSL* ssl = nullptr;
  bool tls_done = false;
  bool ssl_read_wants_write = false;
  bool ssl_write_wants_read = false;
  bool handshake_wants_write = false;  // TLS handshake: waits to write
  std::string cert_key;    // certs_ key, when a certificate was kept
  std::string to_backend;  // inspected bytes from the caller, not yet written
  size_t to_backend_at = 0;
  std::string to_client;  // bytes from gRPC, not yet written to the caller
  size_t to_client_at = 0;
  bool closed = false;
  std::list<Conn*>::iterator handshaking;  // in Loop::handshaking_ until done
  bool in_handshake_list = false;
};

namespace {

constexpr size_t kReadChunk = 64 << 10;

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

// Empties a relay buffer; one that grew past a read gives its memory back, so
// that an idle connection costs what it holds, not what it once held.
void Empty(std::string& buffer) {
  if (buffer.capacity() > kReadChunk) {
    std::string().swap(buffer);
  } else {
    buffer.clear();
  }
}

// "unix-abstract:NAME", "unix:@NAME" and the like -> NAME.
std::string CertKey(absl::string_view peer) {
  const size_t colon = peer.find(':');
  if (colon != absl::string_view::npos) peer.remove_prefix(colon + 1);
  while (!peer.empty() && (peer[0] == '\0' || peer[0] == '@')) {
    peer.remove_prefix(1);
  }
  return std::string(peer);
}

}  // namespace

// The event loop: every descriptor, every connection, one thread.
class GrpcFront::Loop {
 public:
  Loop(GrpcFront& front, const GrpcFrontOptions& options, Metrics* metrics)
      : front_(front), options_(options), metrics_(metrics) {}
  ~Loop();

  absl::Status Init(std::vector<int> listeners);
  void Run();
  void RequestStopAccepting() {
    stop_accepting_.store(true);
    Wake();
  }
  void RequestStop() {
    stop_.store(true);
    Wake();
  }

 private:
  void Wake() {
    const uint64_t one = 1;
    (void)!write(wake_.fd, &one, sizeof(one));
  }
  void Register(Endpoint& ep, uint32_t events);
  void Update(Conn& conn);
  void Accept(Endpoint& listener);
  void CloseConn(Conn& conn, ConnectionRefusal reason,
                 const std::string& detail);
  void ClientReadable(Conn& conn);
  void ClientWritable(Conn& conn);
  void BackendReadable(Conn& conn);
  void BackendWritable(Conn& conn);
  bool TlsHandshake(Conn& conn);
  bool ConnectBackend(Conn& conn);
  void ExpireHandshakes(MonoTime now);
  void LeaveHandshakeList(Conn& conn);
  void CloseListeners();
  bool FlushToBackend(Conn& conn);
  bool FlushToClient(Conn& conn);

  GrpcFront& front_;
  const GrpcFrontOptions options_;
  Metrics* const metrics_;
  int epoll_ = -1;
  int spare_ = -1;  // given up to accept a connection when out of descriptors
  Endpoint wake_{Endpoint::Kind::kWake};
  std::vector<std::unique_ptr<Endpoint>> listeners_;
  std::atomic<bool> stop_accepting_{false};
  std::atomic<bool> stop_{false};
  std::list<Conn*> handshaking_;                  // in order of deadline
  std::vector<std::unique_ptr<Conn>> graveyard_;  // freed after each batch
  absl::flat_hash_map<Conn*, std::unique_ptr<Conn>> conns_;
  absl::flat_hash_map<std::string, size_t> per_peer_;
  uint64_t serial_ = 0;
  MonoTime listeners_paused_until_{};  // out of descriptors: not accepting
};

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
            RealClock::Get().Now() + std::chrono::milliseconds(100);
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
    if ((waiting_in < kHighWater && waiting_out < kHighWater) ||
        conn.ssl_write_wants_read) {
      client |= EPOLLIN;
    }
    if (waiting_out > 0 || conn.ssl_read_wants_write) client |= EPOLLOUT;
  }
  if (conn.backend.fd >= 0) {
    if (waiting_out < kHighWater) backend |= EPOLLIN;
    if (waiting_in > 0) backend |= EPOLLOUT;
  }
  Register(conn.client, client);
  if (conn.backend.fd >= 0) Register(conn.backend, backend);
}

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
  while (conn.to_backend.size() - conn.to_backend_at < kHighWater &&
         conn.to_client.size() - conn.to_client_at < kHighWater) {
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
  while (conn.to_client.size() - conn.to_client_at < kHighWater) {
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
