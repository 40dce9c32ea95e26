// GrpcFront's insides, shared by its two sources: the connection records,
// the event loop's class, and the relay's helpers. grpc_front.cc runs the
// loop (accept, limits, close); front_relay.cc moves each connection's bytes
// (TLS, the guard, both directions). Private to //service/server:grpc_front.
#pragma once

#include <openssl/ssl.h>
#include <unistd.h>

#include <atomic>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "service/server/grpc_front.h"

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

namespace front_internal {

inline constexpr size_t kReadChunk = 64 << 10;

// The PEM of the certificate the caller presented; empty if none.
std::string CertificatePem(SSL* ssl);
// Empties a relay buffer; one that grew past a read gives its memory back, so
// that an idle connection costs what it holds, not what it once held.
void Empty(std::string& buffer);
// "unix-abstract:NAME", "unix:@NAME" and the like -> NAME.
std::string CertKey(absl::string_view peer);

}  // namespace front_internal

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

}  // namespace egress
