// OutlierEjection with a fake clock: an origin is ejected after its entry's
// consecutive failures, calls then fail at once, one probe goes through when
// the time is up, and a failed probe ejects it again for twice as long.
#include "service/admission/outlier_ejection.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/base/error_details.h"
#include "tests/fakes/fake_clock.h"

namespace egress {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;

constexpr char kOrigin[] = "http://10.0.0.7:80";

struct Events final : OutlierEjection::Listener {
  void OnEjected(const std::string& origin, std::chrono::nanoseconds length,
                 bool again) override {
    lengths.push_back(length);
    agains.push_back(again);
  }
  void OnRestored(const std::string&) override { ++restored; }
  std::vector<std::chrono::nanoseconds> lengths;
  std::vector<bool> agains;
  int restored = 0;
};

class OutlierEjectionTest : public ::testing::Test {
 protected:
  OutlierEjectionTest() : ejection_(clock_, &events_) {
    rule_.consecutive_failures = 3;
    rule_.base_time = seconds(10);
    rule_.max_time = seconds(25);
  }
  absl::Status Admit() { return ejection_.Admit(kOrigin, "origins[0]", rule_); }
  void Record(CallVerdict verdict) {
    ejection_.Record(kOrigin, rule_, verdict);
  }

  FakeClock clock_;
  Events events_;
  OutlierEjection ejection_;
  EjectionRule rule_;
};

TEST_F(OutlierEjectionTest, ConsecutiveConnectionFailuresEjectTheOrigin) {
  Record(CallVerdict::kConnectionFailure);
  Record(CallVerdict::kConnectionFailure);
  EXPECT_TRUE(Admit().ok());
  Record(CallVerdict::kConnectionFailure);
  absl::Status refused = Admit();
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsUnavailable(refused));
  EXPECT_EQ(ReasonOf(refused), "ORIGIN_EJECTED");
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("http://10.0.0.7:80 is ejected after connection "
                        "failures in a row (origins[0]); calls fail at once "
                        "for 10.0s more"));
  EXPECT_EQ(ejection_.ejected(), 1u);
  ASSERT_EQ(events_.lengths.size(), 1u);
  EXPECT_EQ(events_.lengths[0], seconds(10));
}

TEST_F(OutlierEjectionTest, AnAnswerInBetweenResetsTheStreak) {
  Record(CallVerdict::kConnectionFailure);
  Record(CallVerdict::kConnectionFailure);
  Record(CallVerdict::kAnswered);
  Record(CallVerdict::kConnectionFailure);
  Record(CallVerdict::kConnectionFailure);
  EXPECT_TRUE(Admit().ok());
  // Neither do calls that say nothing of the origin (cancelled, deadline).
  Record(CallVerdict::kNoVerdict);
  EXPECT_TRUE(Admit().ok());
  EXPECT_EQ(ejection_.ejected(), 0u);
}

TEST_F(OutlierEjectionTest, OneProbeWhenTheTimeIsUpAndItsSuccessRestores) {
  for (int i = 0; i < 3; ++i) Record(CallVerdict::kConnectionFailure);
  clock_.Advance(seconds(10));
  EXPECT_TRUE(Admit().ok()) << "the probe";
  EXPECT_FALSE(Admit().ok()) << "one probe at a time";
  Record(CallVerdict::kAnswered);
  EXPECT_TRUE(Admit().ok());
  EXPECT_TRUE(Admit().ok());
  EXPECT_EQ(ejection_.ejected(), 0u);
  EXPECT_EQ(events_.restored, 1);
}

TEST_F(OutlierEjectionTest, AFailedProbeEjectsAgainForLongerUpToTheCap) {
  for (int i = 0; i < 3; ++i) Record(CallVerdict::kConnectionFailure);
  clock_.Advance(seconds(10));
  ASSERT_TRUE(Admit().ok());
  Record(CallVerdict::kConnectionFailure);
  clock_.Advance(seconds(19));
  EXPECT_FALSE(Admit().ok()) << "20 s the second time";
  clock_.Advance(seconds(1));
  ASSERT_TRUE(Admit().ok());
  Record(CallVerdict::kConnectionFailure);
  ASSERT_EQ(events_.lengths.size(), 3u);
  EXPECT_EQ(events_.lengths[1], seconds(20));
  EXPECT_EQ(events_.lengths[2], seconds(25)) << "capped at max_time";
  EXPECT_EQ(events_.agains, (std::vector<bool>{false, true, true}));
}

TEST_F(OutlierEjectionTest, AProbeWithoutAVerdictLetsTheNextCallProbe) {
  for (int i = 0; i < 3; ++i) Record(CallVerdict::kConnectionFailure);
  clock_.Advance(seconds(10));
  ASSERT_TRUE(Admit().ok());
  Record(CallVerdict::kNoVerdict);  // the probe's caller went away
  EXPECT_TRUE(Admit().ok());
}

TEST_F(OutlierEjectionTest, AStuckProbeStopsHoldingBackTheNext) {
  for (int i = 0; i < 3; ++i) Record(CallVerdict::kConnectionFailure);
  clock_.Advance(seconds(10));
  ASSERT_TRUE(Admit().ok());
  EXPECT_FALSE(Admit().ok());
  clock_.Advance(defaults::kEjectionProbeTimeout + seconds(1));
  EXPECT_TRUE(Admit().ok());
}

TEST_F(OutlierEjectionTest, ServerErrorsEjectOnlyWhenTheEntrySaysSo) {
  for (int i = 0; i < 10; ++i) Record(CallVerdict::kServerError);
  EXPECT_TRUE(Admit().ok()) << "off by default";
  rule_.consecutive_5xx = 4;
  for (int i = 0; i < 4; ++i) Record(CallVerdict::kServerError);
  absl::Status refused = Admit();
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.message()), HasSubstr("5xx answers"));
}

TEST_F(OutlierEjectionTest, OtherOriginsAreNotAffected) {
  for (int i = 0; i < 3; ++i) Record(CallVerdict::kConnectionFailure);
  EXPECT_TRUE(ejection_.Admit("http://10.0.0.8:80", "default", rule_).ok());
}

TEST(CallVerdictTest, FromTheCallsStatus) {
  EXPECT_EQ(VerdictOf(absl::OkStatus(), 200), CallVerdict::kAnswered);
  EXPECT_EQ(VerdictOf(absl::OkStatus(), 503), CallVerdict::kServerError);
  EXPECT_EQ(VerdictOf(WithReason(absl::UnavailableError("x"),
                                 ErrorReason::kConnectRefused),
                      0),
            CallVerdict::kConnectionFailure);
  EXPECT_EQ(VerdictOf(WithReason(absl::UnavailableError("x"),
                                 ErrorReason::kProxyConnectFailed),
                      0),
            CallVerdict::kConnectionFailure);
  EXPECT_EQ(VerdictOf(absl::CancelledError("x"), 0), CallVerdict::kNoVerdict);
  EXPECT_EQ(VerdictOf(WithReason(absl::DeadlineExceededError("x"),
                                 ErrorReason::kUpstreamTimeout),
                      0),
            CallVerdict::kNoVerdict);
}

}  // namespace
}  // namespace egress
