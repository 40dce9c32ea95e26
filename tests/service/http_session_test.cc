// HttpSession against a real loopback upstream: connection reuse, error
// counting, limits and the error codes a caller sees.
#include "service/transport/http_session.h"

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/counting_observer.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/scripted_upstream.h"
#include "tests/fakes/session_calls.h"

namespace egress {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

class HttpSessionTest : public ::testing::Test {
 protected:
  UpstreamRequest Get(const std::string& target, int port) {
    return MakeRequest("127.0.0.1", port, target);
  }
  UpstreamRequest Get(const std::string& target) {
    return Get(target, upstream_.port());
  }
  std::unique_ptr<HttpSession> NewSession(int port) {
    return MakeSession("127.0.0.1", port, options_, clock_, observer_);
  }
  Deadline Within() { return Deadline::In(clock_, std::chrono::seconds(10)); }

  FakeUpstream upstream_;
  FakeClock clock_;
  CountingObserver observer_;
  SessionOptions options_;
};

TEST_F(HttpSessionTest, ReusesConnectionForSameOrigin) {
  auto session = NewSession(upstream_.port());
  for (int i = 0; i < 20; ++i) {
    auto response = SendWhole(*session, Get("/echo"), Within());
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->connection_reused, i > 0) << "request " << i;
    EXPECT_EQ(response->attempts, 1);
  }
  EXPECT_EQ(upstream_.connections(), 1);
  EXPECT_EQ(observer_.opened.load(), 1);
  EXPECT_EQ(observer_.reused.load(), 19);
  EXPECT_EQ(session->requests_served(), 20);
}

TEST_F(HttpSessionTest, SendsMethodHeadersAndBinaryBody) {
  auto session = NewSession(upstream_.port());
  UpstreamRequest request = Get("/echo?x=1");
  request.method = "PUT";
  request.body = std::string("\0\1\2\xff binary", 11);
  request.headers = {{"X-One", "1"}};
  auto response = SendWhole(*session, request, Within());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->body, request.body);
  EXPECT_THAT(response->headers, testing::Contains(Pair("X-Method", "PUT")));
  EXPECT_THAT(response->headers,
              testing::Contains(Pair("X-Target", "/echo?x=1")));
}

TEST_F(HttpSessionTest, SendsHostHeaderAndNoAcceptEncodingOfItsOwn) {
  auto session = NewSession(upstream_.port());
  auto response = SendWhole(*session, Get("/headers"), Within());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_THAT(response->body,
              HasSubstr("Host: 127.0.0.1:" + std::to_string(upstream_.port())));
  // The body is passed through untouched, so the service must not ask for a
  // compression the caller did not ask for.
  EXPECT_THAT(response->body, testing::Not(HasSubstr("Accept-Encoding")));
}

TEST_F(HttpSessionTest, KeepsResponseHeadersInWireOrder) {
  // A raw upstream, so that the order on the wire is known: repeated names
  // and the fields between them arrive exactly as sent.
  ScriptedUpstream upstream([](int fd, int) {
    return ScriptedUpstream::Send(
        fd,
        "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Between: 1\r\n"
        "Set-Cookie: b=2\r\nset-cookie: c=3\r\nContent-Length: 0\r\n\r\n");
  });
  auto session = NewSession(upstream.port());
  auto response = SendWhole(*session, Get("/"), Within());
  ASSERT_TRUE(response.ok()) << response.status();
  std::vector<std::string> fields;
  for (const auto& [name, value] : response->headers) {
    fields.push_back(name + ": " + value);
  }
  EXPECT_THAT(fields,
              ElementsAre("Set-Cookie: a=1", "X-Between: 1", "Set-Cookie: b=2",
                          "set-cookie: c=3", "Content-Length: 0"));
}

TEST_F(HttpSessionTest, RemovesHopByHopResponseHeaders) {
  // Every hop-by-hop field of RFC 9110 section 7.6.1 (and the Proxy-* ones),
  // in mixed case, around two end-to-end fields that must pass.
  ScriptedUpstream upstream([](int fd, int) {
    return ScriptedUpstream::Send(
        fd,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        "Connection: keep-alive\r\nKEEP-ALIVE: timeout=5\r\n"
        "Proxy-Connection: keep-alive\r\nProxy-Authenticate: Basic\r\n"
        "TE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\n"
        "X-End-To-End: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n0\r\n\r\n");
  });
  auto session = NewSession(upstream.port());
  auto response = SendWhole(*session, Get("/"), Within());
  ASSERT_TRUE(response.ok()) << response.status();
  std::vector<std::string> fields;
  for (const auto& [name, value] : response->headers) {
    fields.push_back(name + ": " + value);
  }
  EXPECT_THAT(fields,
              ElementsAre("Content-Type: text/plain", "X-End-To-End: 1"));
  EXPECT_EQ(response->body, "abc");
}

TEST_F(HttpSessionTest, UpstreamErrorStatusIsAnAnswerNotAnError) {
  auto session = NewSession(upstream_.port());
  auto response = SendWhole(*session, Get("/status/503"), Within());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 503);
  EXPECT_EQ(session->consecutive_errors(), 0);
}

TEST_F(HttpSessionTest, RefusedConnectIsUnavailableAndCountsAnError) {
  const int port = UnusedLoopbackPort();
  auto session = NewSession(port);
  auto response = SendWhole(*session, Get("/", port), Within());
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(response.status().message(), HasSubstr("connect to"));
  EXPECT_THAT(response.status().message(),
              HasSubstr("127.0.0.1:" + std::to_string(port)));
  EXPECT_EQ(session->consecutive_errors(), 1);
}

TEST_F(HttpSessionTest, BrokenAfterExactlyMaxConsecutiveErrors) {
  const int port = UnusedLoopbackPort();
  auto session = NewSession(port);
  for (int i = 1; i <= 3; ++i) {
    EXPECT_NE(session->state(), HttpSession::State::kBroken)
        << "before error " << i;
    EXPECT_FALSE(SendWhole(*session, Get("/", port), Within()).ok());
  }
  EXPECT_EQ(session->state(), HttpSession::State::kBroken);
}

TEST_F(HttpSessionTest, SuccessResetsTheErrorCount) {
  auto session = NewSession(upstream_.port());
  ASSERT_TRUE(SendWhole(*session, Get("/echo"), Within()).ok());
  // A deadline already in the past fails without touching the connection.
  EXPECT_FALSE(
      SendWhole(*session, Get("/echo"), Deadline(clock_, clock_.Now())).ok());
  EXPECT_FALSE(
      SendWhole(*session, Get("/echo"), Deadline(clock_, clock_.Now())).ok());
  EXPECT_EQ(session->consecutive_errors(), 2);
  ASSERT_TRUE(SendWhole(*session, Get("/echo"), Within()).ok());
  EXPECT_EQ(session->consecutive_errors(), 0);
  EXPECT_FALSE(
      SendWhole(*session, Get("/echo"), Deadline(clock_, clock_.Now())).ok());
  EXPECT_FALSE(
      SendWhole(*session, Get("/echo"), Deadline(clock_, clock_.Now())).ok());
  // Four errors in all, but never three in a row.
  EXPECT_NE(session->state(), HttpSession::State::kBroken);
}

TEST_F(HttpSessionTest, ResponseOverLimitIsResourceExhaustedNotASessionError) {
  auto session = NewSession(upstream_.port());
  auto response = SendWhole(*session, Get("/bytes/5000"), Within(), nullptr,
                            nullptr, /*max_bytes=*/1000);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(response.status().message(),
              HasSubstr("--max_response_bytes=1000"));
  EXPECT_EQ(session->consecutive_errors(), 0);
  // The session recovers on a fresh connection.
  auto next = SendWhole(*session, Get("/bytes/1000"), Within(), nullptr,
                        nullptr, /*max_bytes=*/1000);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->body.size(), 1000u);
}

TEST_F(HttpSessionTest, BinaryBodyArrivesIntact) {
  auto session = NewSession(upstream_.port());
  auto response = SendWhole(*session, Get("/bytes/70000"), Within());
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->body.size(), 70000u);
  for (size_t i = 0; i < response->body.size(); ++i) {
    ASSERT_EQ(static_cast<unsigned char>(response->body[i]), i % 256) << i;
  }
}

TEST_F(HttpSessionTest, SlowUpstreamIsDeadlineExceeded) {
  auto session = NewSession(upstream_.port());
  // The fake clock does not move, so the real read timeout (from the deadline's
  // distance) is what fires: 200 ms against an answer after 2 s.
  auto response =
      SendWhole(*session, Get("/slow/2000"),
                Deadline::In(clock_, std::chrono::milliseconds(200)));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded)
      << response.status();
}

TEST_F(HttpSessionTest, ConnectionCloseFromUpstreamReconnectsWithoutError) {
  auto session = NewSession(upstream_.port());
  ASSERT_TRUE(SendWhole(*session, Get("/close"), Within()).ok());
  auto next = SendWhole(*session, Get("/echo"), Within());
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE(next->connection_reused);
  EXPECT_EQ(session->consecutive_errors(), 0);
  EXPECT_EQ(upstream_.connections(), 2);
}

TEST_F(HttpSessionTest, ExhaustedAfterMaxRequests) {
  options_.max_requests = 2;
  auto session = NewSession(upstream_.port());
  ASSERT_TRUE(SendWhole(*session, Get("/echo"), Within()).ok());
  EXPECT_NE(session->state(), HttpSession::State::kExhausted);
  ASSERT_TRUE(SendWhole(*session, Get("/echo"), Within()).ok());
  EXPECT_EQ(session->state(), HttpSession::State::kExhausted);
}

}  // namespace
}  // namespace egress
