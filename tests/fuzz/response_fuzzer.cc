// libFuzzer target for the response side: arbitrary bytes from an upstream
// into an HttpSession. A loopback server answers each request with the input,
// then closes; the session must return a response or an error, never crash,
// hang or leak. Small head limits make every limit reachable within
// libFuzzer's default input size.
//
// Built with clang by scripts/fuzz.sh (-fsanitize=fuzzer); replayed over
// tests/fuzz/response_corpus by //tests/fuzz:response_corpus_test in every
// `bazel test //...`, plain and under ASan.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "service/transport/http_session.h"
#include "service/transport/session_observer.h"
#include "tests/fakes/session_calls.h"

namespace egress {
namespace {

// One connection at a time: read the request head, write the current input,
// close the writing side, drain, close.
class OneShotUpstream {
 public:
  OneShotUpstream() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
            0 ||
        listen(listen_fd_, 16) != 0) {
      std::abort();
    }
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    std::thread([this] { Serve(); }).detach();
  }

  void set_answer(std::string bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    answer_ = std::move(bytes);
  }
  uint16_t port() const { return port_; }

 private:
  void Serve() {
    for (;;) {
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      std::string request;
      char buffer[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 1000) <= 0) break;
        ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      std::string answer;
      {
        std::lock_guard<std::mutex> lock(mu_);
        answer = answer_;
      }
      size_t sent = 0;
      while (sent < answer.size()) {
        ssize_t n =
            send(fd, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      shutdown(fd, SHUT_WR);
      // Drain what the client still sends, so that close() sends no reset.
      for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) break;
        if (recv(fd, buffer, sizeof(buffer), 0) <= 0) break;
      }
      close(fd);
    }
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::mutex mu_;
  std::string answer_;  // guarded by mu_
};

}  // namespace
}  // namespace egress

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace egress;
  static OneShotUpstream* const upstream = new OneShotUpstream();
  static SessionObserver* const observer = new SessionObserver();
  upstream->set_answer(std::string(reinterpret_cast<const char*>(data), size));

  SessionOptions options;
  options.head_limits.max_line_bytes = 256;
  options.head_limits.max_headers = 16;
  options.head_limits.max_head_bytes = 1024;
  const size_t max_response_bytes = 2048;
  const Origin origin{"http", "127.0.0.1", upstream->port()};
  HttpSession session(origin, options, RealClock::Get(), *observer);
  UpstreamRequest request;
  // The first byte picks the method, so that HEAD's bodyless rules are fuzzed.
  request.method = size > 0 && data[0] % 4 == 0 ? "HEAD" : "GET";
  request.origin = origin;
  request.target = "/";
  absl::StatusOr<UpstreamResponse> response = SendWhole(
      session, request, Deadline::In(RealClock::Get(), std::chrono::seconds(2)),
      nullptr, nullptr, max_response_bytes);
  if (response.ok()) {
    // An answer is a real one: a status in range, a body within its limit.
    if (response->status < 200 || response->status > 599) std::abort();
    if (response->body.size() > max_response_bytes) std::abort();
  } else if (absl::IsDeadlineExceeded(response.status())) {
    // The upstream always closes after its answer: nothing may wait for the
    // deadline.
    std::abort();
  }
  return 0;
}
