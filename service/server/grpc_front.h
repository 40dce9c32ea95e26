// GrpcFront: egressd's gRPC port. It accepts callers' connections itself and
// relays each one, through an H2Guard, to gRPC's own listener on an abstract
// Unix socket that only this process knows, so that what reaches gRPC 1.51's
// HTTP/2 parser is bounded first (docs/security.md tells why and what it
// costs). Per connection it also holds the limits gRPC has no knob for:
//
//   - connections in all (`max_connections`) and per peer address
//     (`max_connections_per_peer`; Unix-socket callers are one peer each);
//     a refused connection is closed at once, counted by reason;
//   - a caller has `handshake_timeout` to finish TLS and send the HTTP/2
//     preface; gRPC's listener sees a connection only after that;
//   - out of descriptors, accept() keeps working (a spare descriptor is
//     given up to accept and close the connection) instead of spinning;
//   - a caller that does not read its answers is not read either: at most
//     `defaults::kFrontHighWater` bytes wait per direction, so gRPC's own
//     buffers are all it can grow.
// Idle connections are closed by gRPC (--max_connection_idle), and the front
// closes the caller's side when gRPC closes its own.
//
//   absl::StatusOr<std::unique_ptr<GrpcFront>> front =
//       GrpcFront::Start(options, &metrics);
//   ... (*front)->port() ...
//   (*front)->StopAccepting();  // drain: connections in flight go on
//   (*front)->Close();          // then every connection is closed
//
// With TLS (`tls` set), the front terminates TLS (ALPN h2), and a verified
// client certificate is kept for CallerAuth: PeerCertificate(context.peer()).
//
// Thread safety: one thread runs the event loop; Start, StopAccepting, Close
// from one controlling thread; port() and PeerCertificate() from any.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "service/base/defaults.h"
#include "service/front/h2_guard.h"
#include "service/telemetry/metrics.h"

namespace egress {

struct GrpcFrontOptions {
  // Where callers connect: as --listen ("host:port", "[::]:port",
  // "unix:/path", "unix-abstract:name"); port 0 picks one.
  std::string listen = defaults::kListen;
  // The abstract Unix socket name (no leading NUL) gRPC listens on.
  std::string backend;
  H2GuardLimits guard;
  size_t max_connections = defaults::kMaxConnections;
  // 0: no per-peer limit.
  size_t max_connections_per_peer = defaults::kMaxConnectionsPerPeer;
  std::chrono::nanoseconds handshake_timeout = defaults::kHandshakeTimeout;
  // TLS on the callers' side: a server context with certificate, key and (for
  // mutual TLS) client verification set; null: plaintext.
  std::shared_ptr<SSL_CTX> tls;
};

class GrpcFront {
 public:
  // Binds `options.listen` and starts the event loop. Errors name --listen.
  // REQUIRES: `metrics` outlives the front.
  static absl::StatusOr<std::unique_ptr<GrpcFront>> Start(
      const GrpcFrontOptions& options, Metrics* metrics);
  ~GrpcFront();
  GrpcFront(const GrpcFront&) = delete;
  GrpcFront& operator=(const GrpcFront&) = delete;

  int port() const { return port_; }  // 0 for Unix sockets

  // Closes the listeners: new connections are refused by the kernel, those
  // open go on. Idempotent.
  void StopAccepting();
  // Closes every connection and stops the loop. Idempotent.
  void Close();

  // The PEM client certificate a mutual-TLS caller presented, by the peer
  // string gRPC gives its calls (ServerContext::peer()); empty if none.
  std::string PeerCertificate(const std::string& grpc_peer) const;

 private:
  struct Conn;
  struct Endpoint;
  class Loop;

  GrpcFront() = default;

  std::unique_ptr<Loop> loop_;
  std::thread thread_;
  int port_ = 0;
  bool closed_ = false;

  mutable std::mutex certs_mu_;
  // gRPC's peer string of a relayed connection -> the caller's certificate.
  absl::flat_hash_map<std::string, std::string>
      certs_;  // Guarded by certs_mu_.
};

}  // namespace egress
