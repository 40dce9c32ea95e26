// CallLog: request ids, the in-flight gauge, per-call metrics, the warning
// for refusals and the access log line, read back from real Prometheus text
// and the real log output.
#include "service/call_log.h"

#include <prometheus/text_serializer.h>

#include <chrono>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/destination_policy.h"
#include "tests/fakes/fake_clock.h"

namespace egress {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

class CallLogTest : public ::testing::Test {
 protected:
  std::string MetricsText() {
    return prometheus::TextSerializer().Serialize(metrics_.Collect());
  }

  FakeClock clock_;
  Metrics metrics_;
  CallLog log_{metrics_, clock_, /*access_log=*/true};
};

TEST_F(CallLogTest, TheCallersRequestIdIsKeptEscaped) {
  CallRecord record;
  log_.Begin(absl::string_view("abc-123\n"), clock_.Now(), record);
  EXPECT_EQ(record.request_id, "abc-123\\n");
  log_.Complete(record, absl::OkStatus());
}

TEST_F(CallLogTest, MissingOrOverlongRequestIdsAreGeneratedAndDistinct) {
  CallRecord a, b, c;
  log_.Begin(std::nullopt, clock_.Now(), a);
  log_.Begin(std::nullopt, clock_.Now(), b);
  log_.Begin(std::string(kMaxRequestIdBytes + 1, 'x'), clock_.Now(), c);
  EXPECT_THAT(a.request_id, MatchesRegex("[0-9a-f]{16}"));
  EXPECT_THAT(c.request_id, MatchesRegex("[0-9a-f]{16}"));
  EXPECT_NE(a.request_id, b.request_id);
  EXPECT_NE(b.request_id, c.request_id);
  for (CallRecord* r : {&a, &b, &c}) log_.Complete(*r, absl::OkStatus());
}

TEST_F(CallLogTest, InFlightGaugeCountsCallsBetweenBeginAndComplete) {
  CallRecord a, b;
  log_.Begin(std::nullopt, clock_.Now(), a);
  log_.Begin(std::nullopt, clock_.Now(), b);
  EXPECT_THAT(MetricsText(), HasSubstr("egress_requests_in_flight 2\n"));
  log_.Complete(a, absl::OkStatus());
  log_.Complete(b, absl::OkStatus());
  EXPECT_THAT(MetricsText(), HasSubstr("egress_requests_in_flight 0\n"));
}

TEST_F(CallLogTest, CompleteCountsTheCallAndReturnsItsTotalTime) {
  CallRecord record;
  log_.Begin(std::nullopt, clock_.Now(), record);
  record.method = "POST";
  record.http_status = 503;
  clock_.Advance(std::chrono::milliseconds(250));
  EXPECT_EQ(log_.Complete(record, absl::OkStatus()),
            std::chrono::milliseconds(250));
  const std::string text = MetricsText();
  EXPECT_THAT(text, HasSubstr("egress_requests_total{code_class=\"5xx\","
                              "method=\"POST\",outcome=\"OK\"} 1"));
  EXPECT_THAT(text, HasSubstr("egress_request_duration_seconds_sum 0.25\n"));
}

TEST_F(CallLogTest, APolicyRefusalIsCountedByRuleAndLoggedWithTheCaller) {
  auto policy = DestinationPolicy::Create(PolicyOptions{});
  ASSERT_TRUE(policy.ok());
  const absl::Status refused = (*policy)->CheckAddress("10.1.2.3");
  ASSERT_TRUE(absl::IsPermissionDenied(refused));
  CallRecord record;
  log_.Begin(absl::string_view("r1"), clock_.Now(), record);
  record.identity = "billing";
  record.url = "http://10.1.2.3/";
  ::testing::internal::CaptureStderr();
  log_.Complete(record, refused);
  const std::string logged = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(MetricsText(),
              HasSubstr("egress_policy_denied_total{reason=\"private\"} 1"));
  EXPECT_THAT(logged, HasSubstr("[r1] policy: caller billing url "
                                "http://10.1.2.3/: connect to 10.1.2.3"));
  EXPECT_THAT(logged, HasSubstr("[r1] access caller=billing method=GET "
                                "origin=- outcome=PERMISSION_DENIED status=0"));
}

TEST_F(CallLogTest, TheAccessLogLineCanBeTurnedOff) {
  CallLog quiet(metrics_, clock_, /*access_log=*/false);
  CallRecord record;
  quiet.Begin(std::nullopt, clock_.Now(), record);
  ::testing::internal::CaptureStderr();
  quiet.Complete(record, absl::OkStatus());
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace egress
