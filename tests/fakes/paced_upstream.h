// PacedUpstream: an HTTP/1.1 upstream on 127.0.0.1 that keeps thousands of
// connections waiting on one thread (epoll), for load tests and benchmarks
// where a thread per connection would measure the fake instead of egressd.
// It answers GET and HEAD (a request body, sized by Content-Length, is read
// and ignored) on keep-alive connections:
//
//   /delay/MS          200 after MS milliseconds, body "ok"
//   /events/N/MS/B     200 text/event-stream, chunked: N events, the first
//                      MS ms after the request, then one every MS ms; each is
//                      B bytes (at least 40) "data: <sent_us> xxx...\n\n",
//                      where sent_us is the send time on the monotonic clock
//                      (steady_clock, shared by the processes of one machine)
//   anything else      404
//
// It listens on `ports` ports (each an origin of its own), all served by the
// same thread.
//
//   PacedUpstream upstream(20);
//   std::string url = upstream.Url(i % 20, "/delay/1000");
//
// Thread safety: the accessors are thread-safe; the destructor stops the
// thread and closes every connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"

namespace egress {

class PacedUpstream {
 public:
  // Listens on `ports` ephemeral ports, or on `fixed_port` when it is not 0
  // (then `ports` must be 1).
  explicit PacedUpstream(int ports = 1, int fixed_port = 0);
  ~PacedUpstream();
  PacedUpstream(const PacedUpstream&) = delete;
  PacedUpstream& operator=(const PacedUpstream&) = delete;

  int port(int i = 0) const { return ports_[i]; }
  // "http://127.0.0.1:<port(i)><path>"
  std::string Url(int i, absl::string_view path) const;

  // Requests answered (completely sent) and connections accepted so far.
  int64_t answered() const { return answered_.load(); }
  int64_t accepted() const { return accepted_.load(); }
  // Connections open now, and the most open at once.
  int64_t open() const { return open_.load(); }
  int64_t peak_open() const { return peak_open_.load(); }
  // Requests being delayed or streamed now, and the most at once since the
  // start or the last ResetPeakWaiting.
  int64_t waiting() const { return waiting_.load(); }
  int64_t peak_waiting() const { return peak_waiting_.load(); }
  void ResetPeakWaiting() { peak_waiting_.store(waiting_.load()); }

  // Parses the send time out of one event's text ("data: <sent_us> ...");
  // -1 when it is not an event of ours.
  static int64_t SentMicros(absl::string_view event);
  // The monotonic clock of SentMicros, in microseconds.
  static int64_t NowMicros();

 private:
  void Loop();

  std::vector<int> listeners_;
  std::vector<int> ports_;
  int epoll_ = -1;
  int wake_ = -1;  // an eventfd the destructor writes to stop Loop
  std::atomic<int64_t> answered_{0};
  std::atomic<int64_t> accepted_{0};
  std::atomic<int64_t> open_{0};
  std::atomic<int64_t> peak_open_{0};
  std::atomic<int64_t> waiting_{0};
  std::atomic<int64_t> peak_waiting_{0};
  std::thread thread_;
};

}  // namespace egress
