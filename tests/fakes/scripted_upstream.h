// ScriptedUpstream: a raw-socket HTTP/1.1 server on 127.0.0.1 that misbehaves
// on purpose, for fault-injection tests. It reads real requests off real
// sockets and then follows its Script:
//
//   kNormal          answer every request "200 ok", keep the connection open
//   kDropReused      answer a connection's first request; read its second and
//                    close without answering (a keep-alive connection that died
//                    while idle, as seen by the client)
//   kCloseIdle       answer, keep alive, close a connection idle for idle_close
//   kResetMidBody    send headers for 1000 bytes, 100 bytes, then reset (RST)
//   kStall           read the request and never answer
//   kGarbage         answer with bytes that are not HTTP, then close
//   kCustom          call the test's Responder with the socket after each
//                    request: it writes any bytes, in any pieces, at any pace
//                    (hostile-upstream tests)
//
// Stop() closes the listener and every connection; Start() listens again on the
// same port, so a test can take an upstream down and bring it back.
//
// Thread safety: counters are thread-safe; Start/Stop from the test thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"

namespace egress {

enum class Script {
  kNormal,
  kDropReused,
  kCloseIdle,
  kResetMidBody,
  kStall,
  kGarbage,
  kCustom,
};

class ScriptedUpstream {
 public:
  // Listens on `address` (a loopback IPv4 address) and `port` (0: any).
  explicit ScriptedUpstream(
      Script script,
      std::chrono::milliseconds idle_close = std::chrono::milliseconds(100),
      std::string address = "127.0.0.1", int port = 0);
  // kCustom: `responder(fd, n)` runs after the n-th request (from 1) on a
  // connection and answers on `fd`; returning false closes the connection.
  // With `wait_for_body` false it runs as soon as the request head is in, so
  // that it can answer before the body was read.
  using Responder = std::function<bool(int fd, int n)>;
  explicit ScriptedUpstream(Responder responder, bool wait_for_body = true);
  ~ScriptedUpstream();

  // Writes all of `bytes` to `fd`; false when the peer is gone.
  static bool Send(int fd, absl::string_view bytes);
  // The last request head read (through its blank line).
  std::string last_request_head() const;
  ScriptedUpstream(const ScriptedUpstream&) = delete;
  ScriptedUpstream& operator=(const ScriptedUpstream&) = delete;

  void Stop();
  void Start();  // listens again on port()

  int port() const { return port_; }
  std::string Url(absl::string_view path) const;
  int connections() const { return connections_.load(); }
  int requests() const { return requests_.load(); }
  // Connections this server has closed (by its script, or a peer's EOF).
  int closed() const { return closed_.load(); }

 private:
  void AcceptLoop(int listen_fd);
  void Serve(int fd);
  // Reads one request head (and a Content-Length body). False on EOF, error,
  // stop, or (kCloseIdle) idleness.
  bool ReadRequest(int fd, std::string& buffer);

  const Script script_;
  const Responder responder_;
  const bool wait_for_body_ = true;
  const std::chrono::milliseconds idle_close_;
  const std::string address_;
  int port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  std::atomic<int> closed_{0};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::string last_request_head_;      // guarded by mu_
  std::vector<std::thread> handlers_;  // guarded by mu_
  std::vector<int> open_fds_;          // guarded by mu_
};

}  // namespace egress
