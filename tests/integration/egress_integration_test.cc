// End to end: an in-process egressd (gRPC on 127.0.0.1, port 0) in front of a
// real loopback upstream, called through a real gRPC channel.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/egress/v1/egress.grpc.pb.h"
#include "service/server/egress_server.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/integration/egress_harness.h"
#include "tests/integration/health.grpc.pb.h"
#include "tests/integration/reflection.pb.h"

namespace egress {
namespace {

using ::egress::v1::DoRequest;
using ::egress::v1::DoResponse;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;

class EgressIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override { egress_.Start(); }

  void Restart(const std::function<void(Config&)>& tweak) {
    egress_.Start(tweak);
  }

  grpc::Status Do(const DoRequest& request, DoResponse* response,
                  milliseconds deadline = milliseconds(10000)) {
    return egress_.Do(request, response, deadline);
  }
  DoRequest Request(const std::string& method, const std::string& path) {
    return MakeRequest(method, upstream_.Url(path));
  }
  grpc::Status Get(const std::string& path, DoResponse* response) {
    return Do(Request("GET", path), response);
  }
  std::string MetricsText() { return egress_.MetricsText(); }
  double Metric(const std::string& series) { return egress_.Metric(series); }
  double MetricSum(const std::string& name) { return egress_.MetricSum(name); }

  FakeUpstream upstream_;
  EgressHarness egress_;
};

TEST_F(EgressIntegrationTest, ReturnsUpstreamStatusHeadersAndBody) {
  DoRequest request = Request("POST", "/echo?q=1");
  request.set_body(std::string("\0\x01\xfe\xff", 4));
  auto* h = request.add_headers();
  h->set_name("X-Caller");
  h->set_value("test");
  DoResponse response;
  grpc::Status status = Do(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), 200);
  EXPECT_EQ(response.body(), request.body());
  EXPECT_EQ(response.timing().attempts(), 1);
  EXPECT_GT(
      response.timing().total().nanos() + response.timing().total().seconds(),
      0);
}

TEST_F(EgressIntegrationTest,
       CallersConnectionsAreRecycledAfterMaxConnectionAge) {
  // After --max_connection_age the server sends GOAWAY: the caller's channel
  // drops to IDLE and its next call opens a new connection (to whichever
  // replica is there now). Without the setting the channel stays READY.
  Restart([](Config& c) {
    c.max_connection_age = std::chrono::milliseconds(500);
    c.max_connection_age_grace = std::chrono::milliseconds(500);
  });
  DoResponse response;
  ASSERT_TRUE(Get("/", &response).ok());
  EXPECT_EQ(egress_.channel()->GetState(false), GRPC_CHANNEL_READY);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (egress_.channel()->GetState(false) == GRPC_CHANNEL_READY &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_NE(egress_.channel()->GetState(false), GRPC_CHANNEL_READY);
  EXPECT_TRUE(Get("/", &response).ok());  // reconnects by itself

  Restart(
      [](Config& c) { c.max_connection_age = std::chrono::nanoseconds(0); });
  ASSERT_TRUE(Get("/", &response).ok());
  // Not a synchronization but the window observed: three times the age that
  // closed the connection above, and it stays open.
  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_EQ(egress_.channel()->GetState(false), GRPC_CHANNEL_READY);
}

TEST_F(EgressIntegrationTest, UpstreamErrorStatusIsAnOkCall) {
  DoResponse response;
  grpc::Status status = Get("/status/404", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), 404);
  EXPECT_EQ(response.body(), "status 404");
  ASSERT_TRUE(Get("/status/503", &response).ok());
  EXPECT_EQ(response.status(), 503);
}

TEST_F(EgressIntegrationTest, RepeatedResponseHeadersKeepTheirOrder) {
  DoResponse response;
  ASSERT_TRUE(Get("/repeat", &response).ok());
  std::vector<std::string> cookies;
  for (const auto& header : response.headers()) {
    if (header.name() == "Set-Cookie") cookies.push_back(header.value());
  }
  EXPECT_THAT(cookies, testing::ElementsAre("a=1", "b=2", "c=3"));
}

TEST_F(EgressIntegrationTest, SequentialCallsReuseAHandfulOfConnections) {
  DoResponse response;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(Get("/echo", &response).ok()) << "call " << i;
  }
  // 64 workers, but the most recently idle one takes each call, so the calls
  // stay on one or two warm connections instead of one per worker.
  EXPECT_LE(upstream_.connections(), 3);
  EXPECT_TRUE(response.timing().connection_reused());
  EXPECT_GE(MetricSum("egress_connections_reused_total"), 197);
}

TEST_F(EgressIntegrationTest, ConcurrentCallersStayWithinTheWorkerCount) {
  Restart([](Config& c) { c.workers = 8; });
  std::atomic<int> failures{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      DoResponse response;
      for (int i = 0; i < 200; ++i) {
        if (!Get("/echo", &response).ok()) ++failures;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(upstream_.requests(), 800);
  EXPECT_LE(upstream_.connections(), 8);
}

TEST_F(EgressIntegrationTest, MetricsShowRequestsReuseAndRecreationReasons) {
  DoResponse response;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Get("/echo", &response).ok());
  // Three refused connects to a dead port drop that session as "errors".
  DoRequest dead;
  dead.set_url(absl::StrCat("http://127.0.0.1:", UnusedLoopbackPort(), "/"));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Do(dead, &response).error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  std::string text = MetricsText();
  EXPECT_THAT(
      text, HasSubstr("egress_requests_total{code_class=\"2xx\",method=\"GET\","
                      "outcome=\"OK\"} 5"));
  EXPECT_THAT(
      text,
      HasSubstr("egress_requests_total{code_class=\"none\",method=\"GET\","
                "outcome=\"UNAVAILABLE\"} 3"));
  EXPECT_THAT(
      text, HasSubstr("egress_session_recreations_total{reason=\"errors\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("egress_session_recreations_total{reason=\"idle\"} 0"));
  EXPECT_GE(MetricSum("egress_connections_reused_total"), 4);
  EXPECT_THAT(text, HasSubstr("egress_request_duration_seconds_count 8"));
  EXPECT_THAT(text, HasSubstr("egress_upstream_duration_seconds_count{origin="
                              "\"other\",rpc=\"Do\"} 5"));
  EXPECT_THAT(text, HasSubstr("egress_upstream_first_byte_seconds_count{"
                              "origin=\"other\",rpc=\"Do\"} 5"));
  EXPECT_EQ(Metric("egress_requests_in_flight"), 0);
  // What dashboards expect from any exporter.
  EXPECT_GT(Metric("process_resident_memory_bytes"), 1e6);
  EXPECT_GT(Metric("process_cpu_seconds_total"), 0);
  EXPECT_GT(Metric("process_open_fds"), 3);
  EXPECT_GT(Metric("process_start_time_seconds"), 1.7e9);
  EXPECT_EQ(Metric("egress_build_info{version=\"0.1.0\"}"), 1);
}

// Plain HTTP: a connect phase on a new connection, none when reused, no TLS;
// the origins listed in --metrics_origins get their own label.
TEST_F(EgressIntegrationTest, TimingPhasesAndOriginLabels) {
  const std::string origin =
      absl::StrCat("http://127.0.0.1:", upstream_.port());
  Restart([&](Config& c) {
    c.metrics_origins = absl::StrCat("HTTP://127.0.0.1:", upstream_.port(),
                                     ", https://api.example.com");
  });
  using google::protobuf::util::TimeUtil;
  DoResponse first, second;
  ASSERT_TRUE(Get("/echo", &first).ok());
  ASSERT_TRUE(Get("/echo", &second).ok());
  const egress::v1::Timing& t = first.timing();
  EXPECT_GT(TimeUtil::DurationToNanoseconds(t.connect()), 0);
  EXPECT_FALSE(t.has_tls());
  EXPECT_GE(t.first_byte(), t.connect());
  EXPECT_EQ(t.remote_address(), "127.0.0.1");
  EXPECT_EQ(t.remote_port(), upstream_.port());
  EXPECT_TRUE(second.timing().connection_reused());
  EXPECT_FALSE(second.timing().has_connect());
  EXPECT_GT(TimeUtil::DurationToNanoseconds(second.timing().first_byte()), 0);

  // DoStream's head has the same phases.
  grpc::ClientContext context;
  auto reader = egress_.stub().DoStream(
      &context, egress::v1::ForStream(Request("GET", "/echo")));
  egress::v1::DoStreamResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  ASSERT_TRUE(chunk.has_head());
  EXPECT_EQ(chunk.head().timing().remote_port(), upstream_.port());
  EXPECT_GT(TimeUtil::DurationToNanoseconds(chunk.head().timing().first_byte()),
            0);
  while (reader->Read(&chunk)) {
  }
  ASSERT_TRUE(reader->Finish().ok());

  const std::string text = MetricsText();
  const std::string labels =
      absl::StrCat("{origin=\"", origin, "\",rpc=\"Do\"}");
  EXPECT_EQ(Metric("egress_upstream_first_byte_seconds_count" + labels), 2)
      << text;
  EXPECT_EQ(Metric("egress_upstream_duration_seconds_count" + labels), 2);
  EXPECT_EQ(Metric(absl::StrCat("egress_upstream_first_byte_seconds_count{",
                                "origin=\"", origin, "\",rpc=\"DoStream\"}")),
            1);
  EXPECT_EQ(Metric("egress_upstream_first_byte_seconds_count{origin="
                   "\"https://api.example.com:443\",rpc=\"Do\"}"),
            0);
  EXPECT_EQ(Metric("egress_upstream_first_byte_seconds_count{origin="
                   "\"other\",rpc=\"Do\"}"),
            0);
}

TEST_F(EgressIntegrationTest, NoPoolingBaselineRecreatesEverySession) {
  Restart([](Config& c) { c.sessions.session.max_requests = 1; });
  DoResponse response;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Get("/echo", &response).ok());
  EXPECT_EQ(upstream_.connections(), 10);
  EXPECT_FALSE(response.timing().connection_reused());
  EXPECT_EQ(Metric("egress_session_recreations_total{reason=\"max_requests\"}"),
            10);
}

TEST_F(EgressIntegrationTest, IdleSessionsAreClosedByTheWorkers) {
  Restart([](Config& c) { c.pool.keepalive_timeout = milliseconds(200); });
  DoResponse response;
  ASSERT_TRUE(Get("/echo", &response).ok());
  // Bounded wait (up to 3 s) for the idle worker's maintenance to drop it.
  for (int i = 0; i < 300 && Metric("egress_sessions_active") != 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(Metric("egress_sessions_active"), 0);
  EXPECT_EQ(Metric("egress_session_recreations_total{reason=\"idle\"}"), 1);
}

TEST_F(EgressIntegrationTest, BadInputGetsItsCodeAndTheServerKeepsServing) {
  struct Bad {
    std::string method, url, header, value;
    grpc::StatusCode code;
    std::string words;
  };
  const std::string ok_url = upstream_.Url("/echo");
  const Bad cases[] = {
      {"GET", "", "", "", grpc::StatusCode::INVALID_ARGUMENT, "url: is empty"},
      {"GET", "ftp://x/", "", "", grpc::StatusCode::INVALID_ARGUMENT, "scheme"},
      {"G E T", ok_url, "", "", grpc::StatusCode::INVALID_ARGUMENT, "method"},
      {"GET", ok_url + "\r\nX: y", "", "", grpc::StatusCode::INVALID_ARGUMENT,
       "control character"},
      {"GET", "http://127.0.0.1:99999/", "", "",
       grpc::StatusCode::INVALID_ARGUMENT, "1-65535"},
      {"GET", ok_url, "Connection", "close", grpc::StatusCode::INVALID_ARGUMENT,
       "hop-by-hop"},
      {"GET", ok_url, "X-A", "a\nb", grpc::StatusCode::INVALID_ARGUMENT,
       "CR, LF or NUL"},
      {"GET", ok_url, "Host", "evil", grpc::StatusCode::INVALID_ARGUMENT,
       "Host"},
  };
  for (const Bad& bad : cases) {
    DoRequest request;
    request.set_method(bad.method);
    request.set_url(bad.url);
    if (!bad.header.empty()) {
      auto* h = request.add_headers();
      h->set_name(bad.header);
      h->set_value(bad.value);
    }
    DoResponse response;
    grpc::Status status = Do(request, &response);
    EXPECT_EQ(status.error_code(), bad.code) << bad.url;
    EXPECT_THAT(status.error_message(), HasSubstr(bad.words)) << bad.url;
  }
  EXPECT_EQ(upstream_.requests(), 0);  // nothing bad reached the upstream
  DoResponse response;
  ASSERT_TRUE(Get("/echo", &response).ok());
  EXPECT_THAT(MetricsText(), HasSubstr("outcome=\"INVALID_ARGUMENT\"} "));
}

TEST_F(EgressIntegrationTest, BodiesOverTheLimitsAreResourceExhausted) {
  Restart([](Config& c) {
    c.service.admission.limits.max_request_bytes = 1000;
    c.service.max_response_bytes = 5000;
  });
  DoRequest big = Request("POST", "/echo");
  big.set_body(std::string(1001, 'x'));
  DoResponse response;
  grpc::Status status = Do(big, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max_request_bytes=1000"));

  status = Get("/bytes/5001", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max_response_bytes=5000"));
  ASSERT_TRUE(Get("/bytes/5000", &response).ok());
  EXPECT_EQ(response.body().size(), 5000u);
}

TEST_F(EgressIntegrationTest, SlowUpstreamHitsTheCallersDeadline) {
  // The client library answers DEADLINE_EXCEEDED by itself at 300 ms; what is
  // tested is that the service also gave up then: its only worker is free for
  // the next call at once, not when the upstream answers at 1.5 s, and the
  // call is not counted as a 2xx answer.
  Restart([](Config& c) { c.workers = 1; });
  DoResponse response;
  grpc::Status status =
      Do(Request("GET", "/slow/1500"), &response, milliseconds(300));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  DoResponse next;
  ASSERT_TRUE(Get("/echo", &next).ok());
  // Had the worker stayed on the upstream, this call would have queued for
  // about 1.2 s.
  EXPECT_LT(next.timing().queued().seconds() * 1000 +
                next.timing().queued().nanos() / 1000000,
            800);
  for (int i = 0; i < 300 && Metric("egress_requests_in_flight") != 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  const std::string metrics = MetricsText();
  EXPECT_THAT(metrics, ::testing::ContainsRegex(
                           "egress_requests_total\\{code_class=\"none\","
                           "method=\"GET\",outcome=\"(DEADLINE_EXCEEDED|"
                           "CANCELLED)\"\\} 1"));
  // One 2xx: the /echo call; the slow call never came back as an answer.
  EXPECT_THAT(metrics, HasSubstr("code_class=\"2xx\",method=\"GET\","
                                 "outcome=\"OK\"} 1\n"));
}

TEST_F(EgressIntegrationTest, RequestTimeoutBoundsTheUpstreamWait) {
  DoRequest request = Request("GET", "/slow/1500");
  request.mutable_timeout()->set_nanos(200 * 1000 * 1000);
  DoResponse response;
  const auto start = std::chrono::steady_clock::now();
  grpc::Status status = Do(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // Answered by the service's own timeout, well before the 10 s call deadline.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  // The budget left when the exchange began: the 200 ms, less the moment the
  // call took to reach a worker.
  EXPECT_THAT(status.error_message(),
              ::testing::ContainsRegex(
                  "no complete response within 0\\.(19[0-9]|200)s"));
}

TEST_F(EgressIntegrationTest, MaxTimeoutCapsTheRequestTimeout) {
  Restart(
      [](Config& c) { c.service.admission.max_timeout = milliseconds(200); });
  DoRequest request = Request("GET", "/slow/1500");
  request.mutable_timeout()->set_seconds(60);
  DoResponse response;
  grpc::Status status = Do(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The budget left when the exchange began: the 200 ms, less the moment the
  // call took to reach a worker.
  EXPECT_THAT(status.error_message(),
              ::testing::ContainsRegex(
                  "no complete response within 0\\.(19[0-9]|200)s"));
}

TEST_F(EgressIntegrationTest, FullQueueIsRefusedAtOnce) {
  Restart([](Config& c) {
    c.workers = 1;
    c.worker_pool.max_queue = 1;
  });
  // One call holds the only worker, a second one waits in the queue.
  std::thread holder([&] {
    DoResponse r;
    Do(Request("GET", "/slow/1000"), &r);
  });
  for (int i = 0; i < 500 && upstream_.requests() < 1; ++i) {
    std::this_thread::sleep_for(milliseconds(2));
  }
  std::thread waiter([&] {
    DoResponse r;
    Do(Request("GET", "/echo"), &r);
  });
  for (int i = 0;
       i < 500 && egress_.server().metrics().queue_depth().Value() < 1; ++i) {
    std::this_thread::sleep_for(milliseconds(2));
  }
  DoResponse response;
  const auto start = std::chrono::steady_clock::now();
  grpc::Status status = Get("/echo", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("queue full"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(500));
  holder.join();
  waiter.join();
}

TEST_F(EgressIntegrationTest,
       CallWhoseDeadlinePassesInTheQueueNeverReachesUpstream) {
  Restart([](Config& c) { c.workers = 1; });
  std::thread holder([&] {
    DoResponse r;
    Do(Request("GET", "/slow/800"), &r);
  });
  for (int i = 0; i < 500 && upstream_.requests() < 1; ++i) {
    std::this_thread::sleep_for(milliseconds(2));
  }
  DoResponse response;
  grpc::Status status =
      Do(Request("GET", "/echo"), &response, milliseconds(200));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  holder.join();
  // Wait (bounded) for the worker to take and answer the expired call.
  for (int i = 0; i < 200 && Metric("egress_requests_in_flight") != 0; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(upstream_.requests(), 1);  // only the holder's call
  EXPECT_THAT(MetricsText(),
              HasSubstr("method=\"GET\",outcome=\"DEADLINE_EXCEEDED\"} 1"));
}

TEST_F(EgressIntegrationTest, HealthIsServing) {
  auto health = grpc::health::v1::Health::NewStub(egress_.channel());
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(health->Check(&context, request, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(EgressIntegrationTest, ReflectionDescribesTheEgressService) {
  // What grpcurl does: list the services, then fetch the API's descriptor.
  namespace reflection = egress::test::reflection;
  grpc::ClientContext context;
  const grpc::internal::RpcMethod method(
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      grpc::internal::RpcMethod::BIDI_STREAMING, egress_.channel());
  std::unique_ptr<
      grpc::ClientReaderWriter<reflection::ServerReflectionRequest,
                               reflection::ServerReflectionResponse>>
      stream(grpc::internal::ClientReaderWriterFactory<
             reflection::ServerReflectionRequest,
             reflection::ServerReflectionResponse>::Create(egress_.channel()
                                                               .get(),
                                                           method, &context));
  reflection::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  reflection::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> services;
  for (const auto& s : response.list_services_response().service()) {
    services.push_back(s.name());
  }
  EXPECT_THAT(services, testing::IsSupersetOf({"egress.v1.EgressService",
                                               "grpc.health.v1.Health"}));

  request.set_file_containing_symbol("egress.v1.EgressService");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_GT(response.file_descriptor_response().file_descriptor_proto_size(),
            0);
  EXPECT_THAT(response.file_descriptor_response().file_descriptor_proto(0),
              HasSubstr("egress/v1/egress.proto"));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(EgressIntegrationTest, RequestIdIsForwardedAndEveryCallIsLogged) {
  ::testing::internal::CaptureStderr();
  grpc::ClientContext context;
  context.AddMetadata("x-request-id", "req-42");
  DoResponse response;
  grpc::Status status =
      egress_.stub().Do(&context, Request("GET", "/headers"), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // Without one, the service makes an id up and still forwards it.
  DoResponse second;
  ASSERT_TRUE(Get("/headers", &second).ok());
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(response.body(), HasSubstr("X-Request-Id: req-42"));
  EXPECT_THAT(second.body(), HasSubstr("X-Request-Id: "));
  EXPECT_THAT(log,
              HasSubstr(absl::StrCat(
                  "[req-42] access caller=anonymous method=GET origin=http://"
                  "127.0.0.1:",
                  upstream_.port(), " outcome=OK status=200")));
  EXPECT_THAT(log, HasSubstr("attempts=1 reused="));
}

// W3C trace context from the caller's metadata goes upstream with the request
// id, and is in the access log; --forward_trace_context=false keeps all three
// inside.
TEST_F(EgressIntegrationTest, TraceContextIsForwardedAndLogged) {
  const std::string parent =
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const auto call = [&](const std::string& traceparent) {
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", "req-7");
    context.AddMetadata("traceparent", traceparent);
    context.AddMetadata("tracestate", "congo=t61rcWkgMzE");
    DoResponse response;
    EXPECT_TRUE(egress_.stub()
                    .Do(&context, Request("GET", "/headers"), &response)
                    .ok());
    return response.body();
  };
  ::testing::internal::CaptureStderr();
  std::string seen = call(parent);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(seen, HasSubstr("traceparent: " + parent));
  EXPECT_THAT(seen, HasSubstr("tracestate: congo=t61rcWkgMzE"));
  EXPECT_THAT(seen, HasSubstr("X-Request-Id: req-7"));
  EXPECT_THAT(log, HasSubstr("traceparent=" + parent +
                             " tracestate=congo=t61rcWkgMzE"));
  // Malformed: dropped, with its tracestate.
  seen = call("00-not-a-trace");
  EXPECT_THAT(seen, Not(HasSubstr("traceparent")));
  EXPECT_THAT(seen, Not(HasSubstr("tracestate")));

  Restart([](Config& c) { c.service.admission.forward_trace_context = false; });
  seen = call(parent);
  EXPECT_THAT(seen, Not(HasSubstr("traceparent")));
  EXPECT_THAT(seen, Not(HasSubstr("X-Request-Id")));
}

// --log_format=json: every line egressd writes is one JSON object.
TEST_F(EgressIntegrationTest, JsonLogsAreOneObjectPerLine) {
  ::testing::internal::CaptureStderr();
  Restart([](Config& c) { c.log_format = "json"; });
  DoResponse response;
  ASSERT_TRUE(Get("/echo", &response).ok());
  DoRequest dead;
  dead.set_url(absl::StrCat("http://127.0.0.1:", UnusedLoopbackPort(), "/"));
  EXPECT_FALSE(Do(dead, &response).ok());
  egress_.Stop();
  const std::string log = ::testing::internal::GetCapturedStderr();
  int lines = 0, access = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    // Lines written before Start took the flag are text.
    if (line.front() != '{') continue;
    ++lines;
    google::protobuf::Struct parsed;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(std::string(line), &parsed)
            .ok())
        << line;
    const auto& f = parsed.fields();
    ASSERT_TRUE(f.contains("time") && f.contains("level") &&
                f.contains("message"))
        << line;
    if (f.at("message").string_value() != "access") continue;
    ++access;
    EXPECT_TRUE(f.contains("request_id"));
    if (f.at("outcome").string_value() == "UNAVAILABLE") {
      EXPECT_EQ(f.at("reason").string_value(), "CONNECT_REFUSED");
    } else {
      EXPECT_EQ(f.at("status").number_value(), 200);
    }
  }
  EXPECT_EQ(access, 2);
  EXPECT_GE(lines, 4) << log;  // start, 2 calls, stop
  Restart([](Config& c) { c.log_format = "text"; });
}

// Answers that ask for a retry (429/503 with Retry-After) are retried when the
// call opts in, within its attempts, its max_wait and the server's budget.
TEST_F(EgressIntegrationTest, RetryAfterAnswersAreRetriedWhenTheCallOptsIn) {
  using google::protobuf::util::TimeUtil;
  const auto call = [&](const std::string& method, const std::string& path,
                        int max_attempts, int64_t max_wait_ms = -1) {
    DoRequest request = Request(method, path);
    if (max_attempts > 0)
      request.mutable_retry()->set_max_attempts(max_attempts);
    if (max_wait_ms >= 0) {
      *request.mutable_retry()->mutable_max_wait() =
          TimeUtil::MillisecondsToDuration(max_wait_ms);
    }
    DoResponse response;
    EXPECT_TRUE(Do(request, &response).ok());
    return response;
  };
  // Two 429s, then 200: three attempts.
  DoResponse r = call("GET", "/busy/a/2/0", 3);
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.body(), "ok after 2");
  EXPECT_EQ(r.timing().attempts(), 3);
  // Not opted in, or not idempotent: the 429/503 comes back.
  EXPECT_EQ(call("GET", "/busy/b/1/0", 0).status(), 429);
  EXPECT_EQ(call("POST", "/busy/c/1/0", 3).status(), 503);
  // Attempts used up.
  r = call("GET", "/busy/d/5/0", 2);
  EXPECT_EQ(r.status(), 429);
  EXPECT_EQ(r.timing().attempts(), 2);
  // A wait over max_wait is not taken; one within it is, and is reported.
  EXPECT_EQ(call("GET", "/busy/e/1/1", 3, 100).status(), 429);
  r = call("GET", "/busy/f/1/1", 3);
  EXPECT_EQ(r.status(), 200);
  EXPECT_GE(TimeUtil::DurationToMilliseconds(r.timing().retry_wait()), 1000);

  // DoStream: the retried answer's head is never sent.
  grpc::ClientContext context;
  DoRequest request = Request("GET", "/busy/g/1/0");
  request.mutable_retry()->set_max_attempts(2);
  auto reader =
      egress_.stub().DoStream(&context, egress::v1::ForStream(request));
  egress::v1::DoStreamResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  ASSERT_TRUE(chunk.has_head());
  EXPECT_EQ(chunk.head().status(), 200);
  EXPECT_EQ(chunk.head().timing().attempts(), 2);
  std::string body;
  while (reader->Read(&chunk)) body += chunk.body();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(body, "ok after 1");

  // a: 2, d: 1, f: 1, g: 1.
  EXPECT_EQ(Metric("egress_answer_retries_total{outcome=\"retried\"}"), 5);
  EXPECT_EQ(Metric("egress_answer_retries_total{outcome=\"attempts\"}"), 1);
  EXPECT_EQ(Metric("egress_answer_retries_total{outcome=\"too_long\"}"), 1);

  // The server's budget: one retry in reserve and none earned.
  Restart([](Config& c) {
    c.retry_budget_ratio = 0;
    c.retry_budget_burst = 1;
  });
  EXPECT_EQ(call("GET", "/busy/h/1/0", 3).status(), 200);
  EXPECT_EQ(call("GET", "/busy/i/1/0", 3).status(), 429);
  EXPECT_EQ(Metric("egress_answer_retries_total{outcome=\"no_budget\"}"), 1);
}

TEST_F(EgressIntegrationTest, AccessLogCanBeTurnedOff) {
  Restart([](Config& c) { c.service.access_log = false; });
  ::testing::internal::CaptureStderr();
  DoResponse response;
  ASSERT_TRUE(Get("/echo", &response).ok());
  EXPECT_THAT(::testing::internal::GetCapturedStderr(),
              testing::Not(HasSubstr("access caller=")));
}

}  // namespace
}  // namespace egress
