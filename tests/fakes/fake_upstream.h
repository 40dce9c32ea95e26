// FakeUpstream: a real HTTP/1.1 server (httplib::Server) on 127.0.0.1, port 0,
// for tests. It counts the distinct connections it accepted (by client port)
// and the requests it served, and answers a fixed set of routes:
//
//   /echo            200, body = request body, X-Method = method,
//                    X-Target = path and query
//   /headers         200, body = the request headers, "name: value\n" each
//   /status/N        status N, body "status N"
//   /repeat          200 with three Set-Cookie headers, in order a, b, c
//   /bytes/N         200, N bytes of every value 0..255 in turn
//   /slow/N          200 after N milliseconds; a POST's body comes back
//   /close           200 with Connection: close
//   /stream/N        200, N pattern bytes (PatternByte) with Content-Length,
//                    generated as they are sent (no N-byte buffer)
//   /chunked/N       the same bytes with chunked transfer encoding
//   /sse/N/MS        text/event-stream: N events "data: i\n\n", MS ms apart;
//                    the send time of each is kept (sse_sent())
//   /sse-lockstep/N  text/event-stream: N events "data: i\n\n", each written
//                    only once the test has acknowledged the one before
//                    (AckSseEvent); a wait over 10 s is counted
//                    (sse_ack_timeouts) and the stream goes on
//   /gate            waits while the gate is closed (CloseGate; at most 60 s),
//                    counted in gate_waiting(), then 200 with the request
//                    body's length as text: a test holds many requests at
//                    the upstream at once, then lets them all go (OpenGate)
//
// Thread safety: accessors are thread-safe; the server runs on its own threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace httplib {
class Server;
}

namespace egress {

class FakeUpstream {
 public:
  // Plain HTTP, served by `threads` threads (each request in flight holds
  // one: a test that holds more at the gate needs more).
  explicit FakeUpstream(int threads = 160);
  // HTTPS with the given PEM certificate and key files.
  FakeUpstream(const std::string& cert_file, const std::string& key_file);
  ~FakeUpstream();
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  int port() const { return port_; }
  // "http[s]://<host>:<port><path>"
  std::string Url(absl::string_view path,
                  absl::string_view host = "127.0.0.1") const;

  // Distinct client connections that sent at least one request.
  int connections() const;
  int requests() const { return requests_.load(); }
  // Generated bodies (/stream, /chunked, /sse) the client stopped reading
  // before the end (httplib reports the transfer as unsuccessful).
  int aborted_streams() const { return aborted_streams_.load(); }
  // When each /sse event was written, in order.
  std::vector<std::chrono::steady_clock::time_point> sse_sent() const;

  // /sse-lockstep: the caller has received events 0..n-1.
  void AckSseEvent(int n);
  int sse_ack_timeouts() const { return sse_ack_timeouts_.load(); }

  // The /gate route: closed, requests wait there; open, they pass (and so do
  // the waiting ones). Open at first.
  void CloseGate();
  void OpenGate();
  int gate_waiting() const;

 private:
  void Count(const std::string& addr, int port);
  void Serve(int threads);

  std::unique_ptr<httplib::Server> server_;
  bool tls_ = false;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> requests_{0};
  std::atomic<int> aborted_streams_{0};
  mutable std::mutex mu_;
  std::set<std::pair<std::string, int>> peers_;  // guarded by mu_
  std::map<std::string, int> busy_;  // /busy requests by key; guarded by mu_
  std::vector<std::chrono::steady_clock::time_point>
      sse_sent_;       // guarded by mu_
  int sse_acked_ = 0;  // guarded by mu_
  std::condition_variable sse_ack_cv_;
  std::atomic<int> sse_ack_timeouts_{0};
  bool gate_open_ = true;  // guarded by mu_
  int gate_waiting_ = 0;   // guarded by mu_
  std::condition_variable gate_cv_;
};

// Byte `i` of the bodies /stream and /chunked generate.
inline char PatternByte(uint64_t i) {
  return static_cast<char>((i * 7 + 13) % 251);
}

// A port on 127.0.0.1 that nothing listens on (bound, then closed).
int UnusedLoopbackPort();

}  // namespace egress
