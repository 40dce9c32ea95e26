// EgressClient against an in-process egressd and a loopback upstream.
#include "client/egress_client.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_resolver.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/integration/egress_harness.h"

namespace egress {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class EgressClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    egress_.Start();
    client_ = std::make_unique<EgressClient>(
        absl::StrCat("127.0.0.1:", egress_.server().grpc_port()));
  }

  FakeUpstream upstream_;
  EgressHarness egress_;
  std::unique_ptr<EgressClient> client_;
};

TEST_F(EgressClientTest, GetReturnsStatusHeadersAndBody) {
  absl::StatusOr<Response> r = client_->Get(upstream_.Url("/status/404"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "status 404");
  EXPECT_EQ(r->Header("content-type"), "text/plain");
  EXPECT_EQ(r->timing.attempts(), 1);
}

TEST_F(EgressClientTest, PostCarriesABinaryBody) {
  const std::string body("\0\x01\x02\xff\xfe binary", 12);
  absl::StatusOr<Response> r =
      client_->Post(upstream_.Url("/echo"), body, {{"X-Trace", "abc"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, body);
  EXPECT_EQ(r->Header("X-Method"), "POST");
}

TEST_F(EgressClientTest, RepeatedResponseHeadersKeepTheirOrder) {
  absl::StatusOr<Response> r = client_->Get(upstream_.Url("/repeat"));
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> cookies;
  for (const auto& [name, value] : r->headers) {
    if (name == "Set-Cookie") cookies.push_back(value);
  }
  EXPECT_THAT(cookies, ElementsAre("a=1", "b=2", "c=3"));
}

TEST_F(EgressClientTest, StreamDeliversHeadThenBody) {
  Request request;
  request.url = upstream_.Url("/sse/3/20");
  int status = 0;
  std::string body;
  absl::Status done = client_->Stream(
      request, [&](const Response& head) { status = head.status; },
      [&](absl::string_view bytes) {
        body.append(bytes.data(), bytes.size());
        return true;
      });
  ASSERT_TRUE(done.ok()) << done;
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body, "data: 0\n\ndata: 1\n\ndata: 2\n\n");
}

TEST_F(EgressClientTest, StoppingAStreamCancelsIt) {
  Request request;
  request.url = upstream_.Url("/stream/100000000");
  size_t seen = 0;
  absl::Status done =
      client_->Stream(request, nullptr, [&](absl::string_view b) {
        seen += b.size();
        return seen < (1 << 20);
      });
  EXPECT_EQ(done.code(), absl::StatusCode::kCancelled);
}

TEST_F(EgressClientTest, DeadlineIsPerCall) {
  Request request;
  request.url = upstream_.Url("/slow/1500");
  request.deadline = std::chrono::milliseconds(200);
  absl::StatusOr<Response> r = client_->Do(request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
}

// The default deadline is for Do: a stream runs as long as the upstream sends.
TEST_F(EgressClientTest, StreamsHaveNoDefaultDeadline) {
  ClientOptions options;
  options.default_deadline = std::chrono::milliseconds(300);
  EgressClient client(absl::StrCat("127.0.0.1:", egress_.server().grpc_port()),
                      options);
  Request request;
  request.url = upstream_.Url("/sse/5/200");  // about 1 s
  std::string body;
  absl::Status done =
      client.Stream(request, nullptr, [&](absl::string_view bytes) {
        body.append(bytes.data(), bytes.size());
        return true;
      });
  ASSERT_TRUE(done.ok()) << done;
  EXPECT_THAT(body, HasSubstr("data: 4\n\n"));
  request.url = upstream_.Url("/slow/1500");
  EXPECT_EQ(client.Do(request).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(EgressClientTest, ServiceErrorsKeepCodeAndMessage) {
  absl::StatusOr<Response> r = client_->Get("ftp://example.com/");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("unsupported scheme"));
  r = client_->Get("http://10.0.0.1/");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("private address"));
}

TEST_F(EgressClientTest, OneClientServesManyThreads) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        absl::StatusOr<Response> r = client_->Get(upstream_.Url("/echo"));
        if (!r.ok() || r->status != 200) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(upstream_.requests(), 200);
}

TEST_F(EgressClientTest, BearerTokenTravelsWithEveryCall) {
  const std::string tokens =
      absl::StrCat(::testing::TempDir(), "/client_tokens");
  FILE* f = fopen(tokens.c_str(), "w");
  fputs("client-test-token-0001 tester\n", f);
  fclose(f);
  egress_.Start([&](Config& c) { c.auth_tokens_file = tokens; });
  const std::string target =
      absl::StrCat("127.0.0.1:", egress_.server().grpc_port());
  EXPECT_EQ(EgressClient(target).Get(upstream_.Url("/echo")).status().code(),
            absl::StatusCode::kUnauthenticated);
  ClientOptions options;
  options.bearer_token = "client-test-token-0001";
  EXPECT_TRUE(EgressClient(target, options).Get(upstream_.Url("/echo")).ok());
}

// Every error carries its stable reason and metadata; the client decodes the
// google.rpc details from the trailer.
TEST_F(EgressClientTest, ErrorsCarryAStableReason) {
  FakeResolver resolver;
  egress_.Start(
      [](Config& c) {
        c.service.max_response_bytes = 100;
        c.inflight.max_per_origin = 1;
      },
      &resolver);
  const EgressClient client(
      absl::StrCat("127.0.0.1:", egress_.server().grpc_port()));
  const auto details = [&client](const std::string& url) {
    absl::StatusOr<Response> r = client.Get(url);
    EXPECT_FALSE(r.ok()) << url;
    return std::make_pair(r.status(), ErrorDetailsOf(r.status()));
  };

  auto [status, d] = details("ftp://127.0.0.1/file");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.reason, "INVALID_REQUEST");
  EXPECT_EQ(d.domain, "egress.local");
  ASSERT_EQ(d.field_violations.size(), 1u);
  EXPECT_EQ(d.field_violations[0].first, "url");

  std::tie(status, d) =
      details(absl::StrCat("http://127.0.0.1:", UnusedLoopbackPort(), "/"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(d.reason, "CONNECT_REFUSED");
  EXPECT_THAT(d.metadata["origin"], HasSubstr("http://127.0.0.1:"));
  EXPECT_EQ(d.metadata["address"], "127.0.0.1");

  std::tie(status, d) = details("http://no-such-host.test/");
  EXPECT_EQ(d.reason, "DNS_FAILED");
  EXPECT_EQ(d.metadata["host"], "no-such-host.test");

  std::tie(status, d) = details("http://10.1.2.3/");
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(d.reason, "DESTINATION_DENIED");
  EXPECT_FALSE(d.metadata["rule"].empty());

  std::tie(status, d) = details(upstream_.Url("/bytes/1000"));
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(d.reason, "RESPONSE_TOO_LARGE");
  EXPECT_EQ(d.metadata["limit"], "--max_response_bytes=100");

  // One call holds the origin's only slot; the next waits until its deadline
  // and is told to retry later.
  const int before = upstream_.requests();
  std::thread slow([&] { (void)client.Get(upstream_.Url("/slow/1500")); });
  while (upstream_.requests() == before) absl::SleepFor(absl::Milliseconds(5));
  Request waiting;
  waiting.url = upstream_.Url("/echo");
  waiting.timeout = std::chrono::milliseconds(300);  // the service's deadline
  absl::StatusOr<Response> r = client.Do(waiting);
  slow.join();
  d = ErrorDetailsOf(r.status());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(d.reason, "ORIGIN_LIMIT");
  EXPECT_EQ(d.metadata["limit"], "--max_inflight_per_origin");
  ASSERT_TRUE(d.retry_delay.has_value());
  EXPECT_GT(d.retry_delay->count(), 0);

  // A status from elsewhere has no details.
  EXPECT_TRUE(ErrorDetailsOf(absl::UnknownError("x")).reason.empty());
}

}  // namespace
}  // namespace egress
