// End to end through gRPC: upstreams that drop reused connections, go down and
// come back, speak TLS, and names resolved through an injected resolver.
#include <google/protobuf/util/time_util.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_resolver.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/scripted_upstream.h"
#include "tests/fakes/test_certs.h"
#include "tests/integration/egress_harness.h"

namespace egress {
namespace {

using ::egress::v1::DoResponse;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

class ResilienceIntegrationTest : public ::testing::Test {
 protected:
  // Upstreams live in the fixture, declared before egress_, so that the service
  // (and its keep-alive connections) stops before they do.
  std::unique_ptr<FakeUpstream> upstream_;
  FakeResolver resolver_;
  EgressHarness egress_;
};

TEST_F(ResilienceIntegrationTest,
       NoIdempotentRequestIsLostToDroppedConnections) {
  // Every connection serves one request; a second one on it is read and then
  // the connection is closed without an answer.
  ScriptedUpstream upstream(Script::kDropReused);
  egress_.Start([](Config& c) { c.workers = 8; });
  std::atomic<int> failures{0};
  std::atomic<int> retried{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 16; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        DoResponse response;
        grpc::Status status =
            egress_.Do(MakeRequest("GET", upstream.Url("/")), &response);
        if (!status.ok() || response.status() != 200) {
          ++failures;
          std::fprintf(stderr, "failed: %s\n", status.error_message().c_str());
        }
        if (response.timing().attempts() == 2) ++retried;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);  // 400 GETs, all answered
  EXPECT_GT(retried.load(), 0);
  EXPECT_EQ(egress_.Metric("egress_stale_retries_total"), retried.load());
  // Stale connections are not session errors.
  EXPECT_EQ(
      egress_.Metric("egress_session_recreations_total{reason=\"errors\"}"), 0);
  EXPECT_GE(egress_.MetricSum("egress_connections_opened_total"), 400 - 8);
}

TEST_F(ResilienceIntegrationTest,
       UpstreamDownIsUnavailableFastAndRecoversWhenBack) {
  ScriptedUpstream upstream(Script::kNormal);
  egress_.Start();
  DoResponse response;
  ASSERT_TRUE(
      egress_.Do(MakeRequest("GET", upstream.Url("/")), &response).ok());
  upstream.Stop();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    grpc::Status status =
        egress_.Do(MakeRequest("GET", upstream.Url("/")), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(status.error_message(), HasSubstr("connection refused"));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  upstream.Start();
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(
        egress_.Do(MakeRequest("GET", upstream.Url("/")), &response).ok());
  }
}

TEST_F(ResilienceIntegrationTest,
       ResetMidBodyIsUnavailableNotATruncatedAnswer) {
  ScriptedUpstream upstream(Script::kResetMidBody);
  egress_.Start();
  DoResponse response;
  grpc::Status status =
      egress_.Do(MakeRequest("GET", upstream.Url("/")), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("response body incomplete"));
}

TEST_F(ResilienceIntegrationTest, CancelledDoFreesItsWorkerAtOnce) {
  // One worker, an upstream that never answers, and a call with a 30 s
  // timeout that its caller cancels once the upstream has its request: the
  // worker must be free for the next call at once, not when the 30 s are over.
  ScriptedUpstream stall(Script::kStall);
  ScriptedUpstream fine(Script::kNormal);
  egress_.Start([](Config& c) { c.workers = 1; });
  grpc::ClientContext context;
  egress::v1::DoRequest slow = MakeRequest("GET", stall.Url("/"));
  slow.mutable_timeout()->set_seconds(30);
  egress::v1::DoResponse ignored;
  std::thread caller([&] {
    grpc::Status status = egress_.stub().Do(&context, slow, &ignored);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  });
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (stall.requests() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(stall.requests(), 1);
  context.TryCancel();
  caller.join();
  const auto start = std::chrono::steady_clock::now();
  egress::v1::DoResponse response;
  grpc::Status next = egress_.Do(MakeRequest("GET", fine.Url("/")), &response);
  EXPECT_TRUE(next.ok()) << next.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST_F(ResilienceIntegrationTest, GarbageThreeTimesRecreatesTheSession) {
  ScriptedUpstream upstream(Script::kGarbage);
  egress_.Start([](Config& c) { c.workers = 1; });
  DoResponse response;
  for (int i = 0; i < 3; ++i) {
    grpc::Status status =
        egress_.Do(MakeRequest("GET", upstream.Url("/")), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  EXPECT_EQ(
      egress_.Metric("egress_session_recreations_total{reason=\"errors\"}"), 1);
}

TEST_F(ResilienceIntegrationTest, NamesResolveThroughTheServicesDnsCache) {
  upstream_ = std::make_unique<FakeUpstream>();
  FakeUpstream& upstream = *upstream_;
  resolver_.Set("api.test", "127.0.0.1");
  egress_.Start(nullptr, &resolver_);
  DoResponse response;
  grpc::Status status = egress_.Do(
      MakeRequest("GET", upstream.Url("/headers", "api.test")), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(response.body(), HasSubstr("Host: api.test:"));
  status = egress_.Do(MakeRequest("GET", upstream.Url("/", "nowhere.test")),
                      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(),
              HasSubstr("cannot resolve host \"nowhere.test\""));
}

class HttpsIntegrationTest : public ResilienceIntegrationTest {
 protected:
  HttpsIntegrationTest() : ca_(::testing::TempDir()) {}
  TestCa ca_;
};

TEST_F(HttpsIntegrationTest, ThousandSequentialCallsCostAHandfulOfHandshakes) {
  CertFiles leaf = ca_.Issue({"leaf", {"localhost"}, {"127.0.0.1"}});
  upstream_ = std::make_unique<FakeUpstream>(leaf.cert, leaf.key);
  FakeUpstream& upstream = *upstream_;
  const std::string ca = ca_.cert_path();
  egress_.Start([&](Config& c) { c.ca_file = ca; });
  DoResponse response;
  for (int i = 0; i < 1000; ++i) {
    grpc::Status status = egress_.Do(
        MakeRequest("GET", upstream.Url("/echo", "localhost")), &response);
    ASSERT_TRUE(status.ok()) << "call " << i << ": " << status.error_message();
  }
  const double handshakes = egress_.MetricSum("egress_tls_handshakes_total");
  std::printf(
      "1000 sequential HTTPS calls: %.0f TLS handshakes, %d connections\n",
      handshakes, upstream.connections());
  RecordProperty("tls_handshakes",
                 std::to_string(static_cast<int>(handshakes)));
  // About one per worker that served them; MRU scheduling keeps that at 1-2.
  EXPECT_LE(handshakes, 3);
  EXPECT_GE(handshakes, 1);
  EXPECT_EQ(egress_.Metric("egress_tls_insecure_skip_verify"), 0);
}

// Timing phases over HTTPS: the first call connects and shakes hands, the
// second reuses the connection and has neither phase.
TEST_F(HttpsIntegrationTest, TimingShowsTheConnectAndTlsPhases) {
  CertFiles leaf = ca_.Issue({"leaf", {"localhost"}, {"127.0.0.1"}});
  upstream_ = std::make_unique<FakeUpstream>(leaf.cert, leaf.key);
  FakeUpstream& upstream = *upstream_;
  FakeResolver resolver;
  resolver.Set("localhost", "127.0.0.1");
  const std::string ca = ca_.cert_path();
  egress_.Start([&](Config& c) { c.ca_file = ca; }, &resolver);
  using google::protobuf::util::TimeUtil;
  DoResponse first, second;
  ASSERT_TRUE(
      egress_.Do(MakeRequest("GET", upstream.Url("/echo", "localhost")), &first)
          .ok());
  ASSERT_TRUE(
      egress_
          .Do(MakeRequest("GET", upstream.Url("/echo", "localhost")), &second)
          .ok());
  const egress::v1::Timing& t = first.timing();
  std::printf("first HTTPS call: dns %s connect %s tls %s first byte %s\n",
              TimeUtil::ToString(t.dns()).c_str(),
              TimeUtil::ToString(t.connect()).c_str(),
              TimeUtil::ToString(t.tls()).c_str(),
              TimeUtil::ToString(t.first_byte()).c_str());
  EXPECT_FALSE(t.connection_reused());
  EXPECT_TRUE(t.has_dns());
  EXPECT_GT(TimeUtil::DurationToNanoseconds(t.connect()), 0);
  EXPECT_GT(TimeUtil::DurationToNanoseconds(t.tls()), 0);
  // The first byte comes after DNS, connect and TLS, and within the exchange.
  EXPECT_GE(t.first_byte(), t.dns() + t.connect() + t.tls());
  EXPECT_LE(t.first_byte(), t.upstream() + t.dns());
  EXPECT_EQ(t.remote_address(), "127.0.0.1");
  EXPECT_EQ(t.remote_port(), upstream.port());

  const egress::v1::Timing& r = second.timing();
  EXPECT_TRUE(r.connection_reused());
  EXPECT_FALSE(r.has_connect());
  EXPECT_FALSE(r.has_tls());
  EXPECT_GT(TimeUtil::DurationToNanoseconds(r.first_byte()), 0);
  EXPECT_EQ(r.remote_address(), "127.0.0.1");
}

TEST_F(HttpsIntegrationTest, TrailingDotHostVerifiesAndSendsTheNormalName) {
  // https://localhost./ is https://localhost/: one session, SNI and the
  // certificate check on "localhost", and Host: localhost:PORT upstream.
  CertFiles leaf = ca_.Issue({"leaf", {"localhost"}, {}});
  upstream_ = std::make_unique<FakeUpstream>(leaf.cert, leaf.key);
  FakeUpstream& upstream = *upstream_;
  egress_.Start([&](Config& c) {
    c.ca_file = ca_.cert_path();
    c.workers = 1;
  });
  for (const char* host : {"localhost.", "LOCALHOST", "localhost"}) {
    DoResponse response;
    grpc::Status status = egress_.Do(
        MakeRequest("GET", upstream.Url("/headers", host)), &response);
    ASSERT_TRUE(status.ok()) << host << ": " << status.error_message();
    EXPECT_THAT(response.body(),
                HasSubstr("Host: localhost:" + std::to_string(upstream.port())))
        << host;
  }
  EXPECT_EQ(egress_.MetricSum("egress_tls_handshakes_total"), 1);
}

TEST_F(HttpsIntegrationTest, SelfSignedUpstreamIsUnavailableSayingWhy) {
  CertFiles leaf = ca_.SelfSigned({"self", {"localhost"}, {}});
  upstream_ = std::make_unique<FakeUpstream>(leaf.cert, leaf.key);
  FakeUpstream& upstream = *upstream_;
  egress_.Start([&](Config& c) { c.ca_file = ca_.cert_path(); });
  DoResponse response;
  grpc::Status status = egress_.Do(
      MakeRequest("GET", upstream.Url("/echo", "localhost")), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(),
              HasSubstr("certificate verify failed: self-signed certificate"));
  EXPECT_EQ(upstream.requests(), 0);
}

TEST_F(HttpsIntegrationTest, InsecureSkipVerifyIsVisibleInMetrics) {
  CertFiles leaf = ca_.SelfSigned({"self3", {"localhost"}, {}});
  upstream_ = std::make_unique<FakeUpstream>(leaf.cert, leaf.key);
  FakeUpstream& upstream = *upstream_;
  egress_.Start([](Config& c) { c.insecure_skip_verify = true; });
  DoResponse response;
  EXPECT_TRUE(
      egress_
          .Do(MakeRequest("GET", upstream.Url("/echo", "localhost")), &response)
          .ok());
  EXPECT_EQ(egress_.Metric("egress_tls_insecure_skip_verify"), 1);
}

}  // namespace
}  // namespace egress
