// HttpSession against upstreams that misbehave on purpose (ScriptedUpstream):
// stale keep-alive connections, idle closes, resets, stalls, garbage, an
// upstream that goes down and comes back, and DNS answers that change.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/policy/destination_policy.h"
#include "service/pool/session_cache.h"
#include "service/transport/dns_cache.h"
#include "service/transport/http_session.h"
#include "tests/fakes/black_hole.h"
#include "tests/fakes/counting_observer.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_resolver.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/scripted_upstream.h"
#include "tests/fakes/session_calls.h"
#include "tests/fakes/wait_until.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class HttpSessionFaultsTest : public ::testing::Test {
 protected:
  static UpstreamRequest RequestTo(const std::string& host, int port,
                                   const std::string& method = "GET") {
    return MakeRequest(host, port, "/", method);
  }
  std::unique_ptr<HttpSession> SessionTo(const std::string& host, int port) {
    return MakeSession(host, port, options_, clock_, observer_);
  }
  // A deadline on clock_, a FakeClock nothing advances: the time left stays
  // `d` however long the real sockets take, so a fault here ends by the
  // session's own socket timeouts, never by this deadline.
  Deadline Within(milliseconds d = milliseconds(5000)) {
    return Deadline::In(clock_, d);
  }

  FakeClock clock_;
  CountingObserver observer_;
  SessionOptions options_;
};

TEST_F(HttpSessionFaultsTest, StaleReusedConnectionIsRetriedOnceOnAFreshOne) {
  ScriptedUpstream upstream(Script::kDropReused);
  auto session = SessionTo("127.0.0.1", upstream.port());
  ASSERT_TRUE(
      SendWhole(*session, RequestTo("127.0.0.1", upstream.port()), Within())
          .ok());
  auto second =
      SendWhole(*session, RequestTo("127.0.0.1", upstream.port()), Within());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->attempts, 2);
  EXPECT_FALSE(second->connection_reused);  // answered on the fresh connection
  EXPECT_EQ(observer_.stale_retries.load(), 1);
  EXPECT_EQ(session->consecutive_errors(),
            0);  // a retry is not a session error
  EXPECT_EQ(upstream.connections(), 2);
}

TEST_F(HttpSessionFaultsTest, NonIdempotentRequestIsNotRetried) {
  ScriptedUpstream upstream(Script::kDropReused);
  auto session = SessionTo("127.0.0.1", upstream.port());
  ASSERT_TRUE(
      SendWhole(*session, RequestTo("127.0.0.1", upstream.port()), Within())
          .ok());
  auto post = SendWhole(
      *session, RequestTo("127.0.0.1", upstream.port(), "POST"), Within());
  ASSERT_FALSE(post.ok());
  EXPECT_EQ(post.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(post.status().message()),
              HasSubstr("may not have been delivered"));
  EXPECT_THAT(std::string(post.status().message()),
              HasSubstr("POST is not idempotent"));
  EXPECT_EQ(observer_.stale_retries.load(), 0);
  EXPECT_EQ(upstream.requests(), 2);  // sent once, never twice
}

TEST_F(HttpSessionFaultsTest, IdempotencyKeyMakesAPostRetryable) {
  ScriptedUpstream upstream(Script::kDropReused);
  auto session = SessionTo("127.0.0.1", upstream.port());
  ASSERT_TRUE(
      SendWhole(*session, RequestTo("127.0.0.1", upstream.port()), Within())
          .ok());
  UpstreamRequest post = RequestTo("127.0.0.1", upstream.port(), "POST");
  post.headers = {{"Idempotency-Key", "order-42"}};
  auto result = SendWhole(*session, post, Within());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->attempts, 2);
}

TEST_F(HttpSessionFaultsTest, ConnectionClosedWhileIdleReconnectsWithoutError) {
  ScriptedUpstream upstream(Script::kCloseIdle, milliseconds(50));
  auto session = SessionTo("127.0.0.1", upstream.port());
  for (int i = 0; i < 3; ++i) {
    auto r =
        SendWhole(*session, RequestTo("127.0.0.1", upstream.port()), Within());
    ASSERT_TRUE(r.ok()) << r.status();
    // The upstream closes the idle connection after 50 ms; wait (bounded)
    // until it has, so the next request always finds it closed.
    ASSERT_TRUE(WaitUntil([&] { return upstream.closed() == i + 1; }));
  }
  EXPECT_EQ(session->consecutive_errors(), 0);
  EXPECT_EQ(upstream.connections(), 3);
  EXPECT_EQ(upstream.requests(), 3);
}

TEST_F(HttpSessionFaultsTest,
       ResetInTheMiddleOfTheBodyIsUnavailableAndNotRetried) {
  ScriptedUpstream upstream(Script::kResetMidBody);
  auto session = SessionTo("127.0.0.1", upstream.port());
  auto r =
      SendWhole(*session, RequestTo("127.0.0.1", upstream.port()), Within());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("response body incomplete"));
  EXPECT_EQ(upstream.requests(), 1);
  EXPECT_EQ(session->consecutive_errors(), 1);
}

TEST_F(HttpSessionFaultsTest, StallBeforeHeadersIsDeadlineExceeded) {
  ScriptedUpstream upstream(Script::kStall);
  auto session = SessionTo("127.0.0.1", upstream.port());
  const auto start = std::chrono::steady_clock::now();
  auto r = SendWhole(*session, RequestTo("127.0.0.1", upstream.port()),
                     Within(milliseconds(300)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("within 0.300s"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2));
  EXPECT_EQ(session->consecutive_errors(), 1);  // a timeout is a session error
}

TEST_F(HttpSessionFaultsTest,
       GarbageIsUnavailableAndBreaksTheSessionAfterThree) {
  ScriptedUpstream upstream(Script::kGarbage);
  auto session = SessionTo("127.0.0.1", upstream.port());
  for (int i = 0; i < 3; ++i) {
    auto r =
        SendWhole(*session, RequestTo("127.0.0.1", upstream.port()), Within());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr("malformed response"));
  }
  EXPECT_EQ(session->state(), HttpSession::State::kBroken);
}

TEST_F(HttpSessionFaultsTest,
       UpstreamDownIsUnavailableAtOnceAndRecoversWhenBack) {
  ScriptedUpstream upstream(Script::kNormal);
  SessionCacheOptions cache_options;
  cache_options.session = options_;
  SessionPoolOptions shared_options;
  shared_options.janitor_interval = std::chrono::nanoseconds::zero();
  shared_options.dns = options_.dns;
  SessionPool shared(shared_options, clock_, observer_);
  SessionCache cache(cache_options, shared, clock_, observer_);
  auto call = [&] {
    SessionLease s = cache.Lease(
        Origin{"http", "127.0.0.1", static_cast<uint16_t>(upstream.port())});
    auto r = SendWhole(*s, RequestTo("127.0.0.1", upstream.port()), Within());
    return r.status();
  };
  ASSERT_TRUE(call().ok());
  upstream.Stop();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    absl::Status down = call();
    EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable) << down;
  }
  // Refused connects fail fast: no hang, no waiting for the connect timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(1));
  EXPECT_EQ(observer_.Dropped(DropReason::kErrors), 1);
  upstream.Start();
  EXPECT_TRUE(call().ok());
  EXPECT_TRUE(call().ok());
}

TEST_F(HttpSessionFaultsTest,
       UnreachableUpstreamIsUnavailableAfterTheConnectTimeout) {
  BlackHole hole;
  options_.connect_timeout = milliseconds(200);
  auto session = SessionTo("127.0.0.1", hole.port());
  const auto start = std::chrono::steady_clock::now();
  auto r = SendWhole(*session, RequestTo("127.0.0.1", hole.port()), Within());
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  // Unreachable within --connect_timeout while the call still had time: the
  // caller may retry, so UNAVAILABLE, not DEADLINE_EXCEEDED.
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("timed out after 0.200s"));
  EXPECT_LT(took, seconds(2));
  EXPECT_EQ(session->consecutive_errors(), 1);
}

TEST_F(HttpSessionFaultsTest, ConnectCutShortByTheDeadlineIsDeadlineExceeded) {
  BlackHole hole;
  auto session = SessionTo("127.0.0.1", hole.port());
  auto r = SendWhole(*session, RequestTo("127.0.0.1", hole.port()),
                     Within(milliseconds(200)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded)
      << r.status();
}

TEST_F(HttpSessionFaultsTest, ConnectsToTheAddressTheDnsCacheGave) {
  FakeUpstream upstream;
  FakeResolver resolver;
  resolver.Set("api.test", "127.0.0.1");
  DnsCache dns(resolver, clock_, DnsCacheOptions());
  options_.dns = &dns;
  auto session = SessionTo("api.test", upstream.port());
  UpstreamRequest request = RequestTo("api.test", upstream.port());
  request.target = "/headers";
  auto r = SendWhole(*session, request, Within());
  ASSERT_TRUE(r.ok()) << r.status();
  // The Host header keeps the name; the connection went to the pinned address.
  EXPECT_THAT(r->body,
              HasSubstr("Host: api.test:" + std::to_string(upstream.port())));
  EXPECT_EQ(session->pinned_address(), "127.0.0.1");
  EXPECT_EQ(resolver.calls(), 1);
}

TEST_F(HttpSessionFaultsTest, BlackHoledFirstAddressFallsBackAfterAHeadStart) {
  // The name's first address never answers (an AAAA record with a broken
  // IPv6 path, say); the second works. The call succeeds after the head start,
  // not after --connect_timeout, and the working address is tried first after.
  ScriptedUpstream upstream(Script::kNormal);  // 127.0.0.1:P
  BlackHole hole("127.0.0.2", upstream.port());
  FakeResolver resolver;
  resolver.Set("dual.test", std::vector<std::string>{"127.0.0.2", "127.0.0.1"});
  DnsCache dns(resolver, clock_, DnsCacheOptions());
  options_.dns = &dns;
  options_.connect_timeout = seconds(5);
  auto session = SessionTo("dual.test", upstream.port());
  const auto start = std::chrono::steady_clock::now();
  auto r = SendWhole(*session, RequestTo("dual.test", upstream.port(), "POST"),
                     Within());
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status();  // safe even for POST: nothing was sent
  EXPECT_GE(took, defaults::kConnectHeadStart - milliseconds(20));
  EXPECT_LT(took, seconds(2));
  EXPECT_EQ(session->pinned_address(), "127.0.0.1");
  EXPECT_THAT(session->addresses(), ElementsAre("127.0.0.1", "127.0.0.2"));
  EXPECT_EQ(session->consecutive_errors(), 0);  // a fallback is no error
  EXPECT_EQ(upstream.requests(), 1);
}

TEST_F(HttpSessionFaultsTest, TheHeadStartIsTheSettings) {
  // --connect_head_start=1s: the black-holed first address holds the call
  // that long (a lower bound, whatever the machine's load), not 300 ms.
  ScriptedUpstream upstream(Script::kNormal);
  BlackHole hole("127.0.0.2", upstream.port());
  FakeResolver resolver;
  resolver.Set("slow.test", std::vector<std::string>{"127.0.0.2", "127.0.0.1"});
  DnsCache dns(resolver, clock_, DnsCacheOptions());
  options_.dns = &dns;
  options_.connect_timeout = seconds(5);
  options_.connect_head_start = seconds(1);
  auto session = SessionTo("slow.test", upstream.port());
  const auto start = std::chrono::steady_clock::now();
  auto r =
      SendWhole(*session, RequestTo("slow.test", upstream.port()), Within());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(std::chrono::steady_clock::now() - start,
            seconds(1) - milliseconds(20));
  EXPECT_EQ(session->pinned_address(), "127.0.0.1");
}

TEST_F(HttpSessionFaultsTest, RefusedIpv6LoopbackFallsBackToIpv4AtOnce) {
  // localhost as a Debian install writes /etc/hosts: ::1 as well as
  // 127.0.0.1, while the upstream listens on 127.0.0.1 only.
  ScriptedUpstream upstream(Script::kNormal);
  FakeResolver resolver;
  resolver.Set("localhost.test", std::vector<std::string>{"::1", "127.0.0.1"});
  DnsCache dns(resolver, clock_, DnsCacheOptions());
  options_.dns = &dns;
  auto session = SessionTo("localhost.test", upstream.port());
  const auto start = std::chrono::steady_clock::now();
  auto r = SendWhole(*session, RequestTo("localhost.test", upstream.port()),
                     Within());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start,
            defaults::kConnectHeadStart);
  EXPECT_EQ(session->pinned_address(), "127.0.0.1");
}

TEST_F(HttpSessionFaultsTest,
       AddressesAlternateFamiliesAndAllAreNamedWhenAllFail) {
  // Nothing listens on any of them: each is refused, in Happy-Eyeballs order
  // (the first family, then alternating), and the error names them all.
  FakeResolver resolver;
  resolver.Set("none.test",
               std::vector<std::string>{"127.0.0.3", "127.0.0.4", "::1"});
  DnsCache dns(resolver, clock_, DnsCacheOptions());
  options_.dns = &dns;
  BlackHole unused;  // a port number nothing else listens on
  const int port = unused.port();
  auto session = SessionTo("none.test", port);
  auto r = SendWhole(*session, RequestTo("none.test", port), Within());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("tried every address of \"none.test\": 127.0.0.3, "
                        "::1, 127.0.0.4"));
  EXPECT_EQ(session->consecutive_errors(), 1);
}

TEST_F(HttpSessionFaultsTest, AddressesThePolicyRefusesAreNeverTried) {
  ScriptedUpstream upstream(Script::kNormal);
  FakeResolver resolver;
  resolver.Set("mixed.test", std::vector<std::string>{"10.1.2.3", "127.0.0.1"});
  DnsCache dns(resolver, clock_, DnsCacheOptions());
  PolicyOptions policy_options;
  policy_options.allow_cidrs = *ParseCidrList("127.0.0.0/8", "allow_cidrs");
  auto policy = DestinationPolicy::Create(std::move(policy_options));
  ASSERT_TRUE(policy.ok()) << policy.status();
  options_.dns = &dns;
  options_.policy = policy->get();
  auto session = SessionTo("mixed.test", upstream.port());
  auto r =
      SendWhole(*session, RequestTo("mixed.test", upstream.port()), Within());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(session->addresses(), ElementsAre("127.0.0.1"));
  // Only refused addresses: the refusal, and no connection at all.
  resolver.Set("private.test",
               std::vector<std::string>{"10.1.2.3", "192.168.1.1"});
  auto refused_session = SessionTo("private.test", upstream.port());
  auto refused = SendWhole(
      *refused_session, RequestTo("private.test", upstream.port()), Within());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied)
      << refused.status();
  EXPECT_EQ(upstream.connections(), 1);
}

TEST_F(HttpSessionFaultsTest, DnsFailureIsUnavailableNamingTheHost) {
  FakeResolver resolver;
  DnsCache dns(resolver, clock_, DnsCacheOptions());
  options_.dns = &dns;
  auto session = SessionTo("nowhere.test", 80);
  auto r = SendWhole(*session, RequestTo("nowhere.test", 80), Within());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"nowhere.test\""));
}

TEST_F(HttpSessionFaultsTest, ChangedDnsAnswerTakesEffectWhenTheTtlExpires) {
  ScriptedUpstream first(Script::kNormal);
  ScriptedUpstream second(Script::kNormal, milliseconds(100), "127.0.0.2",
                          first.port());
  FakeResolver resolver;
  resolver.Set("moving.test", "127.0.0.1");
  DnsCacheOptions dns_options;
  dns_options.ttl = seconds(60);
  DnsCache dns(resolver, clock_, dns_options);
  options_.dns = &dns;
  auto session = SessionTo("moving.test", first.port());
  auto send = [&] {
    return SendWhole(*session, RequestTo("moving.test", first.port()), Within())
        .ok();
  };
  ASSERT_TRUE(send());
  resolver.Set("moving.test", "127.0.0.2");
  ASSERT_TRUE(send());  // within the TTL: still the first address
  EXPECT_EQ(first.requests(), 2);
  clock_.Advance(seconds(61));
  ASSERT_TRUE(send());
  EXPECT_EQ(second.requests(), 1);
  EXPECT_EQ(session->pinned_address(), "127.0.0.2");
}

TEST_F(HttpSessionFaultsTest, DroppingAfterErrorsRefreshesTheDnsAnswer) {
  ScriptedUpstream upstream(Script::kNormal);
  FakeResolver resolver;
  resolver.Set("moved.test", "127.0.0.3");  // nothing listens there
  DnsCache dns(resolver, clock_, DnsCacheOptions());
  options_.dns = &dns;
  SessionCacheOptions cache_options;
  cache_options.session = options_;
  SessionPoolOptions shared_options;
  shared_options.janitor_interval = std::chrono::nanoseconds::zero();
  shared_options.dns = options_.dns;
  SessionPool shared(shared_options, clock_, observer_);
  SessionCache cache(cache_options, shared, clock_, observer_);
  const Origin origin{"http", "moved.test",
                      static_cast<uint16_t>(upstream.port())};
  auto call = [&] {
    SessionLease s = cache.Lease(origin);
    bool ok =
        SendWhole(*s, RequestTo("moved.test", upstream.port()), Within()).ok();
    return ok;
  };
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(call());
  EXPECT_EQ(observer_.Dropped(DropReason::kErrors), 1);
  resolver.Set("moved.test", "127.0.0.1");
  // No TTL has passed: the drop itself made the cache ask again.
  EXPECT_TRUE(call());
  EXPECT_EQ(resolver.calls(), 2);
}

}  // namespace
}  // namespace egress
