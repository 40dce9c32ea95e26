// Deadline: a call's timeout from the caller's timeout, its gRPC deadline and
// the limits, and the budgets handed out from it (fake clock: no sleeping).
#include "service/base/deadline.h"

#include <chrono>

#include "gtest/gtest.h"
#include "tests/fakes/fake_clock.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

constexpr nanoseconds kNone = nanoseconds::max();

TEST(DeadlineTest, CallTimeoutTakesTheSmallestOfWhatWasGiven) {
  struct Case {
    const char* what;
    nanoseconds requested, grpc_remaining, fallback, max, want;
  };
  const Case cases[] = {
      {"nothing given: the fallback", nanoseconds(0), kNone, seconds(30),
       seconds(300), seconds(30)},
      {"the fallback is capped too", nanoseconds(0), kNone, seconds(600),
       seconds(300), seconds(300)},
      {"the request's timeout", seconds(2), kNone, seconds(30), seconds(300),
       seconds(2)},
      {"a request timeout over the max", seconds(900), kNone, seconds(30),
       seconds(300), seconds(300)},
      {"only a gRPC deadline: it, not the fallback", nanoseconds(0),
       seconds(50), seconds(30), seconds(300), seconds(50)},
      {"a gRPC deadline over the max", nanoseconds(0), seconds(900),
       seconds(30), seconds(300), seconds(300)},
      {"the gRPC deadline is shorter than the request's", seconds(10),
       seconds(3), seconds(30), seconds(300), seconds(3)},
      {"the request's is shorter than the gRPC deadline", seconds(1),
       seconds(3), seconds(30), seconds(300), seconds(1)},
      {"a gRPC deadline already passed", nanoseconds(0), milliseconds(-5),
       seconds(30), seconds(300), milliseconds(-5)},
  };
  for (const Case& c : cases) {
    CallTimeouts t;
    t.requested = c.requested;
    t.grpc_remaining = c.grpc_remaining;
    t.fallback = c.fallback;
    t.max = c.max;
    EXPECT_EQ(Deadline::CallTimeout(t), c.want) << c.what;
  }
}

TEST(DeadlineTest, ForCallCountsFromTheCallsArrival) {
  FakeClock clock;
  const MonoTime start = clock.Now();
  clock.Advance(seconds(1));  // the call waited a second before admission
  CallTimeouts t;
  t.requested = seconds(5);
  absl::StatusOr<Deadline> d = Deadline::ForCall(clock, start, t);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->at(), start + seconds(5));
  EXPECT_EQ(d->Remaining(), seconds(4));
}

TEST(DeadlineTest, ForCallRefusesWhenNothingIsLeft) {
  FakeClock clock;
  CallTimeouts t;
  t.grpc_remaining = nanoseconds(0);
  absl::StatusOr<Deadline> d = Deadline::ForCall(clock, clock.Now(), t);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(d.status().message().find("before the call reached"),
            std::string::npos);
}

TEST(DeadlineTest, RemainingAndExpiryFollowTheClock) {
  FakeClock clock;
  const Deadline d = Deadline::In(clock, seconds(2));
  EXPECT_FALSE(d.Expired());
  EXPECT_EQ(d.Remaining(), seconds(2));
  clock.Advance(milliseconds(1500));
  EXPECT_EQ(d.Remaining(), milliseconds(500));
  clock.Advance(milliseconds(500));
  EXPECT_TRUE(d.Expired());
  EXPECT_EQ(d.Remaining(), nanoseconds(0));
  clock.Advance(seconds(10));
  EXPECT_EQ(d.Remaining(), nanoseconds(0));  // never negative
  EXPECT_EQ(d.RemainingMicros(), std::chrono::microseconds(1));
}

TEST(DeadlineTest, CapSaysWhetherTheDeadlineOrTheLimitBinds) {
  FakeClock clock;
  const Deadline d = Deadline::In(clock, seconds(3));
  Deadline::Budget connect = d.Cap(seconds(5));
  EXPECT_EQ(connect.time, seconds(3));
  EXPECT_TRUE(connect.cut_by_deadline);
  connect = d.Cap(seconds(1));
  EXPECT_EQ(connect.time, seconds(1));
  EXPECT_FALSE(connect.cut_by_deadline);
}

TEST(DeadlineTest, NeverNeverExpiresAndDoesNotOverflow) {
  FakeClock clock;
  const Deadline never = Deadline::Never(clock);
  EXPECT_TRUE(never.IsNever());
  clock.Advance(std::chrono::hours(24 * 365));
  EXPECT_FALSE(never.Expired());
  EXPECT_EQ(never.Remaining(), nanoseconds::max());
  EXPECT_FALSE(never.Cap(seconds(5)).cut_by_deadline);
  // A huge timeout saturates instead of wrapping into the past.
  const Deadline far = Deadline::In(clock, nanoseconds::max());
  EXPECT_FALSE(far.Expired());
}

}  // namespace
}  // namespace egress
