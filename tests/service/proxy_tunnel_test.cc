// OpenTunnel against a scripted proxy on the other end of a socket pair: what
// it sends, a tunnel opened, refused, and every way a hostile or broken proxy
// can answer (a head over the limits, a close, silence, bytes after the head).
#include "service/transport/proxy_tunnel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/base/clock.h"

namespace egress {
namespace {

using Result = TunnelOutcome::Result;
using ::testing::HasSubstr;

// One tunnel request to a proxy that reads the request, then sends `answer`
// (and closes when `close_after`).
struct Exchange {
  TunnelOutcome outcome;
  std::string request;  // what the proxy received
};

Exchange AskProxy(const std::string& answer, bool close_after = false,
                  std::chrono::milliseconds deadline = std::chrono::seconds(5),
                  HeadLimits limits = HeadLimits{}) {
  int fds[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Exchange out;
  std::thread proxy([&] {
    char buffer[4096];
    while (out.request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = read(fds[1], buffer, sizeof(buffer));
      if (n <= 0) break;
      out.request.append(buffer, static_cast<size_t>(n));
    }
    for (size_t sent = 0; sent < answer.size();) {
      const ssize_t n =
          send(fds[1], answer.data() + sent,
               std::min<size_t>(answer.size() - sent, 65536), MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    if (close_after) shutdown(fds[1], SHUT_WR);
  });
  out.outcome = OpenTunnel(fds[0], "api.example.com:443", "Basic dTpw", limits,
                           Deadline::In(RealClock::Get(), deadline));
  shutdown(fds[0], SHUT_RDWR);  // the proxy's writes end
  proxy.join();
  close(fds[0]);
  close(fds[1]);
  return out;
}

TEST(ProxyTunnelTest, AsksForTheOriginWithTheCredentials) {
  Exchange e = AskProxy("HTTP/1.1 200 Connection established\r\n\r\n");
  EXPECT_EQ(e.outcome.result, Result::kOpen) << e.outcome.detail;
  EXPECT_EQ(e.request,
            "CONNECT api.example.com:443 HTTP/1.1\r\n"
            "Host: api.example.com:443\r\n"
            "Proxy-Authorization: Basic dTpw\r\n\r\n");
}

TEST(ProxyTunnelTest, ARefusalCarriesTheProxysStatus) {
  Exchange e = AskProxy(
      "HTTP/1.1 407 Proxy Authentication Required\r\n"
      "Proxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 5\r\n\r\n"
      "denied");
  EXPECT_EQ(e.outcome.result, Result::kRefused);
  EXPECT_EQ(e.outcome.proxy_status, 407);
  e = AskProxy("HTTP/1.0 403 Forbidden\r\n\r\n", /*close_after=*/true);
  EXPECT_EQ(e.outcome.result, Result::kRefused);
  EXPECT_EQ(e.outcome.proxy_status, 403);
}

TEST(ProxyTunnelTest, AnEndlessStatusLineFailsAtTheLineLimit) {
  Exchange e = AskProxy("HTTP/1.1 200 " + std::string(200 << 10, 'x'));
  EXPECT_EQ(e.outcome.result, Result::kFailed);
  EXPECT_THAT(e.outcome.detail, HasSubstr("its answer to CONNECT: "));
  EXPECT_THAT(e.outcome.detail, HasSubstr("--max_response_line_bytes"));
}

TEST(ProxyTunnelTest, TooManyHeadersFail) {
  std::string answer = "HTTP/1.1 200 OK\r\n";
  for (size_t i = 0; i <= defaults::kMaxResponseHeaders; ++i) {
    answer += "X-Filler: 1\r\n";
  }
  Exchange e = AskProxy(answer + "\r\n");
  EXPECT_EQ(e.outcome.result, Result::kFailed);
  EXPECT_THAT(e.outcome.detail, HasSubstr("--max_response_headers"));
}

TEST(ProxyTunnelTest, AGarbledAnswerFails) {
  Exchange e = AskProxy("SSH-2.0-OpenSSH_9.2\r\n\r\n");
  EXPECT_EQ(e.outcome.result, Result::kFailed);
  EXPECT_THAT(e.outcome.detail, HasSubstr("its answer to CONNECT"));
}

TEST(ProxyTunnelTest, AProxyThatClosesFails) {
  Exchange e = AskProxy("", /*close_after=*/true);
  EXPECT_EQ(e.outcome.result, Result::kFailed);
  EXPECT_EQ(e.outcome.detail, "the proxy closed the connection");
  e = AskProxy("HTTP/1.1 200 Conn", /*close_after=*/true);
  EXPECT_EQ(e.outcome.detail, "the proxy closed the connection");
}

TEST(ProxyTunnelTest, ASilentProxyFailsAtTheDeadline) {
  Exchange e =
      AskProxy("", /*close_after=*/false, std::chrono::milliseconds(200));
  EXPECT_EQ(e.outcome.result, Result::kFailed);
  EXPECT_EQ(e.outcome.detail,
            "the deadline passed waiting for the answer to CONNECT");
}

TEST(ProxyTunnelTest, BytesBeforeTheTlsHandshakeFail) {
  Exchange e = AskProxy("HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n");
  EXPECT_EQ(e.outcome.result, Result::kFailed);
  EXPECT_THAT(e.outcome.detail, HasSubstr("bytes after its answer"));
}

TEST(ProxyTunnelTest, InterimAnswersAreSkipped) {
  Exchange e = AskProxy("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n");
  EXPECT_EQ(e.outcome.result, Result::kOpen) << e.outcome.detail;
}

}  // namespace
}  // namespace egress
