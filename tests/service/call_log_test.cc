// CallLog: request ids, the in-flight gauge, per-call metrics, the warning
// for refusals and the access log line, read back from real Prometheus text
// and the real log output.
#include "service/api/call_log.h"

#include <fcntl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/base/log.h"
#include "service/policy/destination_policy.h"
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
  CallContext record;
  log_.Begin(absl::string_view("abc-123\n"), clock_.Now(), record);
  EXPECT_EQ(record.request_id, "abc-123\\n");
  log_.Complete(record, absl::OkStatus());
}

TEST_F(CallLogTest, MissingOrOverlongRequestIdsAreGeneratedAndDistinct) {
  CallContext a, b, c;
  log_.Begin(std::nullopt, clock_.Now(), a);
  log_.Begin(std::nullopt, clock_.Now(), b);
  log_.Begin(std::string(defaults::kMaxRequestIdBytes + 1, 'x'), clock_.Now(),
             c);
  EXPECT_THAT(a.request_id, MatchesRegex("[0-9a-f]{16}"));
  EXPECT_THAT(c.request_id, MatchesRegex("[0-9a-f]{16}"));
  EXPECT_NE(a.request_id, b.request_id);
  EXPECT_NE(b.request_id, c.request_id);
  for (CallContext* r : {&a, &b, &c}) log_.Complete(*r, absl::OkStatus());
}

TEST_F(CallLogTest, InFlightGaugeCountsCallsBetweenBeginAndComplete) {
  CallContext a, b;
  log_.Begin(std::nullopt, clock_.Now(), a);
  log_.Begin(std::nullopt, clock_.Now(), b);
  EXPECT_THAT(MetricsText(), HasSubstr("egress_requests_in_flight 2\n"));
  log_.Complete(a, absl::OkStatus());
  log_.Complete(b, absl::OkStatus());
  EXPECT_THAT(MetricsText(), HasSubstr("egress_requests_in_flight 0\n"));
}

TEST_F(CallLogTest, CompleteCountsTheCallAndReturnsItsTotalTime) {
  CallContext record;
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
  CallContext record;
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
  CallContext record;
  quiet.Begin(std::nullopt, clock_.Now(), record);
  ::testing::internal::CaptureStderr();
  quiet.Complete(record, absl::OkStatus());
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

// The text line is built by hand (the time formatted once a second, numbers
// with three decimals as printf's "%.3f"): its format is checked here.
TEST(LogTextTest, LinesHaveTheTimeLevelMessageAndFields) {
  const int64_t before = absl::ToUnixMillis(absl::Now());
  ::testing::internal::CaptureStderr();
  LogEvent(LogLevel::kInfo, "access",
           LogFields()
               .Add("caller", "billing")
               .Add("empty", "")
               .Add("status", 200)
               .Add("duration_ms", 1.33)
               .Add("small", 0.0004)
               .Add("rounded", 2.9996)
               .Add("negative", -0.25)
               .Add("large", 123456.789)
               .Add("reused", true));
  Log(LogLevel::kWarning, "second line");
  const std::string logged = ::testing::internal::GetCapturedStderr();
  const int64_t after = absl::ToUnixMillis(absl::Now());
  EXPECT_THAT(
      logged,
      MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                   "\\.[0-9]{3}Z I access caller=billing empty=- "
                   "status=200 duration_ms=1\\.330 small=0\\.000 "
                   "rounded=3\\.000 negative=-0\\.250 "
                   "large=123456\\.789 reused=true\n"
                   "[0-9T:.Z-]{24} W second line\n"));
  // The time is now's, to the millisecond.
  absl::Time logged_at;
  std::string error;
  ASSERT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%E3SZ", logged.substr(0, 24),
                              &logged_at, &error))
      << error;
  EXPECT_GE(absl::ToUnixMillis(logged_at), before);
  EXPECT_LE(absl::ToUnixMillis(logged_at), after);
}

// Points stderr at a file for the life of the object; Read() is what was
// written so far (gtest's CaptureStderr can be read only once, at the end).
class StderrToFile {
 public:
  StderrToFile() : path_(::testing::TempDir() + "/stderr-batching.txt") {
    fd_ = open(path_.c_str(), O_CREAT | O_TRUNC | O_RDWR, 0600);
    saved_ = dup(STDERR_FILENO);
    dup2(fd_, STDERR_FILENO);
  }
  ~StderrToFile() {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    close(fd_);
  }
  std::string Read() const {
    std::ifstream in(path_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string path_;
  int fd_ = -1;
  int saved_ = -1;
};

TEST(LogBatchingTest, LinesWaitForAWarningTheIntervalOrTheEnd) {
  StderrToFile err;
  {
    LogBatching batching(std::chrono::hours(1));  // no timed batch here
    LogInfo("one");
    LogInfo("two");
    EXPECT_EQ(err.Read(), "");
    LogWarning("three");  // goes out at once, after the lines before it
    EXPECT_THAT(err.Read(), MatchesRegex(".* I one\n.* I two\n.* W three\n"));
    LogInfo("four");
    EXPECT_THAT(err.Read(), testing::Not(HasSubstr("four")));
  }
  // The end writes what was pending; then a line is written at once.
  EXPECT_THAT(err.Read(), HasSubstr(" I four\n"));
  LogInfo("five");
  EXPECT_THAT(err.Read(), HasSubstr(" I five\n"));
  {
    LogBatching batching(std::chrono::milliseconds(10));
    LogInfo("six");
    // Written by the interval's batch, well before the end of the scope.
    const auto give_up =
        std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (err.Read().find("six") == std::string::npos &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_THAT(err.Read(), HasSubstr(" I six\n"));
  }
}

TEST(LogBatchingTest, LinesFromManyThreadsStayWholeAndNoneIsLost) {
  StderrToFile err;
  constexpr int kThreads = 8,
                kLines = 500;  // 4,000 lines: several full batches
  {
    LogBatching batching(std::chrono::milliseconds(5));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([t] {
        for (int i = 0; i < kLines; ++i) {
          LogEvent(LogLevel::kInfo, "access",
                   LogFields()
                       .Add("thread", t)
                       .Add("line", i)
                       .Add("padding", std::string(40, 'x')));
        }
      });
    }
    for (auto& thread : threads) thread.join();
  }
  const std::string text = err.Read();
  std::istringstream lines(text);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    ++count;
    ASSERT_THAT(line, MatchesRegex(".* I access thread=[0-9] line=[0-9]+ "
                                   "padding=x{40}"));
  }
  EXPECT_EQ(count, kThreads * kLines);
}

TEST(TraceparentTest, OnlyWellFormedW3CValuesAreKept) {
  const std::string good =
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  EXPECT_TRUE(IsValidTraceparent(good));
  // A later version may carry more fields; version 00 may not.
  EXPECT_TRUE(IsValidTraceparent(
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
  EXPECT_FALSE(IsValidTraceparent(good + "-extra"));
  EXPECT_FALSE(IsValidTraceparent(
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));  // upper
  EXPECT_FALSE(IsValidTraceparent(
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01"));  // zero id
  EXPECT_FALSE(IsValidTraceparent(
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
  EXPECT_FALSE(IsValidTraceparent(
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(IsValidTraceparent("00-4bf92f35-00f067aa0ba902b7-01"));
  EXPECT_FALSE(IsValidTraceparent(""));
}

TEST_F(CallLogTest, TraceContextIsKeptWhenValidAndLoggedAsJson) {
  CallContext record;
  const std::string parent =
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  log_.Begin(CallerTrace{absl::string_view("r7"), absl::string_view(parent),
                         absl::string_view("congo=t61rcWkgMzE")},
             clock_.Now(), record);
  EXPECT_EQ(record.traceparent, parent);
  EXPECT_EQ(record.tracestate, "congo=t61rcWkgMzE");
  record.identity = "billing";
  record.method = "POST";
  record.origin = "https://api.example.com:443";

  SetLogFormat(LogFormat::kJson);
  ::testing::internal::CaptureStderr();
  log_.Complete(record, absl::UnavailableError("connect refused"));
  const std::string line = ::testing::internal::GetCapturedStderr();
  SetLogFormat(LogFormat::kText);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line";
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok())
      << line;
  const auto& f = parsed.fields();
  EXPECT_EQ(f.at("message").string_value(), "access");
  EXPECT_EQ(f.at("level").string_value(), "I");
  EXPECT_EQ(f.at("request_id").string_value(), "r7");
  EXPECT_EQ(f.at("caller").string_value(), "billing");
  EXPECT_EQ(f.at("method").string_value(), "POST");
  EXPECT_EQ(f.at("origin").string_value(), "https://api.example.com:443");
  EXPECT_EQ(f.at("outcome").string_value(), "UNAVAILABLE");
  EXPECT_EQ(f.at("reason").string_value(), "UPSTREAM_FAILED");
  EXPECT_EQ(f.at("status").number_value(), 0);
  EXPECT_FALSE(f.at("reused").bool_value());
  EXPECT_EQ(f.at("traceparent").string_value(), parent);
  EXPECT_EQ(f.at("tracestate").string_value(), "congo=t61rcWkgMzE");
  EXPECT_TRUE(f.contains("time"));

  // A malformed traceparent is dropped, and its tracestate with it.
  CallContext bad;
  log_.Begin(CallerTrace{std::nullopt, absl::string_view("00-xyz"),
                         absl::string_view("a=b")},
             clock_.Now(), bad);
  EXPECT_TRUE(bad.traceparent.empty());
  EXPECT_TRUE(bad.tracestate.empty());
  log_.Complete(bad, absl::OkStatus());
}

}  // namespace
}  // namespace egress
