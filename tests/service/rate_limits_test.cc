// RateLimits on a fake clock: the burst, then one call per interval; waiting
// calls in order, each at its own time; refusals that reserve nothing; the
// burst refilled by time and never beyond; giving a reservation back; keys
// apart and bounded; the rate's syntax; many threads at once.
#include "service/admission/rate_limits.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_clock.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

constexpr RateLimit kTenPerSecondBurstFive{10, 5};

TEST(RateLimitsTest, BurstGoesAtOnceThenOneCallPerInterval) {
  FakeClock clock;
  RateLimits limits(clock);
  const MonoTime t0 = clock.Now();
  for (int i = 0; i < 5; ++i) {
    RateDecision d = limits.Reserve("o", kTenPerSecondBurstFive, t0);
    ASSERT_TRUE(d.reserved) << i;
    EXPECT_EQ(d.at, t0);
  }
  // The sixth may not go now; it would at t0 + 100 ms.
  RateDecision refused = limits.Reserve("o", kTenPerSecondBurstFive, t0);
  EXPECT_FALSE(refused.reserved);
  EXPECT_EQ(refused.at, t0 + milliseconds(100));
  // A call free to go goes even when the time it may wait ended a moment
  // ago (a caller's "now", taken before this one's).
  clock.Advance(milliseconds(100));
  RateDecision now = limits.Reserve("o", kTenPerSecondBurstFive,
                                    clock.Now() - std::chrono::nanoseconds(1));
  EXPECT_TRUE(now.reserved);
  EXPECT_EQ(now.at, clock.Now());
  refused = limits.Reserve("o", kTenPerSecondBurstFive, clock.Now());
  EXPECT_FALSE(refused.reserved);
  EXPECT_EQ(refused.at, t0 + milliseconds(200));
  // Refusing reserved nothing: the same answer again.
  EXPECT_EQ(limits.Reserve("o", kTenPerSecondBurstFive, clock.Now()).at,
            t0 + milliseconds(200));
}

TEST(RateLimitsTest, WaitingCallsGoInOrderEachAtItsTime) {
  FakeClock clock;
  RateLimits limits(clock);
  const MonoTime t0 = clock.Now();
  const MonoTime later = t0 + std::chrono::seconds(10);
  for (int i = 0; i < 5; ++i) {
    limits.Reserve("o", kTenPerSecondBurstFive, later);
  }
  for (int i = 1; i <= 3; ++i) {
    RateDecision d = limits.Reserve("o", kTenPerSecondBurstFive, later);
    ASSERT_TRUE(d.reserved);
    EXPECT_EQ(d.at, t0 + milliseconds(100) * i);
  }
  // One that may wait only 250 ms is refused: its turn is at 400 ms.
  RateDecision refused =
      limits.Reserve("o", kTenPerSecondBurstFive, t0 + milliseconds(250));
  EXPECT_FALSE(refused.reserved);
  EXPECT_EQ(refused.at, t0 + milliseconds(400));
}

TEST(RateLimitsTest, TimeRefillsTheBurstButNeverBeyondIt) {
  FakeClock clock;
  RateLimits limits(clock);
  for (int i = 0; i < 5; ++i) {
    limits.Reserve("o", kTenPerSecondBurstFive, clock.Now());
  }
  clock.Advance(milliseconds(200));  // two calls' worth
  EXPECT_TRUE(
      limits.Reserve("o", kTenPerSecondBurstFive, clock.Now()).reserved);
  EXPECT_TRUE(
      limits.Reserve("o", kTenPerSecondBurstFive, clock.Now()).reserved);
  EXPECT_FALSE(
      limits.Reserve("o", kTenPerSecondBurstFive, clock.Now()).reserved);
  clock.Advance(std::chrono::hours(1));  // idle for long: a burst, no more
  int went = 0;
  while (limits.Reserve("o", kTenPerSecondBurstFive, clock.Now()).reserved) {
    ++went;
    ASSERT_LE(went, 100);
  }
  EXPECT_EQ(went, 5);
}

TEST(RateLimitsTest, OverTimeTheRateHolds) {
  // 1,000 calls offered over 10 s at 300/s against 100/s, burst 10.
  FakeClock clock;
  RateLimits limits(clock);
  const RateLimit limit{100, 10};
  int went = 0;
  for (int i = 0; i < 3000; ++i) {
    if (limits.Reserve("o", limit, clock.Now()).reserved) ++went;
    clock.Advance(std::chrono::microseconds(3333));
  }
  EXPECT_GE(went, 1000);
  EXPECT_LE(went, 1010);  // the rate over 10 s, plus the burst
}

TEST(RateLimitsTest, AReservationNotUsedIsGivenBackOnlyWhenLast) {
  FakeClock clock;
  RateLimits limits(clock);
  const MonoTime later = clock.Now() + std::chrono::seconds(10);
  for (int i = 0; i < 5; ++i) {
    limits.Reserve("o", kTenPerSecondBurstFive, later);
  }
  RateDecision first = limits.Reserve("o", kTenPerSecondBurstFive, later);
  RateDecision second = limits.Reserve("o", kTenPerSecondBurstFive, later);
  ASSERT_EQ(second.at, clock.Now() + milliseconds(200));
  // The first is not the last one: giving it back changes nothing.
  limits.Unreserve("o", kTenPerSecondBurstFive, first);
  EXPECT_EQ(limits.Reserve("o", kTenPerSecondBurstFive, later).at,
            clock.Now() + milliseconds(300));
  // The last one given back: the next call takes its time.
  RateDecision last = limits.Reserve("o", kTenPerSecondBurstFive, later);
  ASSERT_EQ(last.at, clock.Now() + milliseconds(400));
  limits.Unreserve("o", kTenPerSecondBurstFive, last);
  EXPECT_EQ(limits.Reserve("o", kTenPerSecondBurstFive, later).at,
            clock.Now() + milliseconds(400));
}

TEST(RateLimitsTest, KeysAreApartAndTheLeastRecentlyUsedIsDropped) {
  FakeClock clock;
  RateLimits limits(clock, /*max_keys=*/2);
  const RateLimit one{1, 1};
  EXPECT_TRUE(limits.Reserve("a", one, clock.Now()).reserved);
  EXPECT_TRUE(limits.Reserve("b", one, clock.Now()).reserved);
  EXPECT_FALSE(limits.Reserve("a", one, clock.Now()).reserved);
  EXPECT_FALSE(limits.Reserve("b", one, clock.Now()).reserved);
  // "c" drops "a" (used less recently than "b"), which comes back full.
  EXPECT_TRUE(limits.Reserve("c", one, clock.Now()).reserved);
  EXPECT_EQ(limits.keys(), 2u);
  EXPECT_FALSE(limits.Reserve("b", one, clock.Now()).reserved);
  EXPECT_TRUE(limits.Reserve("a", one, clock.Now()).reserved);
}

TEST(RateLimitsTest, ParsesRatesAndNamesWhatIsWrong) {
  auto per_second = ParseRateLimit("100/s", 0);
  ASSERT_TRUE(per_second.ok()) << per_second.status();
  EXPECT_EQ(*per_second, (RateLimit{100, 100}));
  auto per_minute = ParseRateLimit("6000/min", 20);
  ASSERT_TRUE(per_minute.ok());
  EXPECT_EQ(*per_minute, (RateLimit{100, 20}));
  auto per_hour = ParseRateLimit("36/h", 0);
  ASSERT_TRUE(per_hour.ok());
  EXPECT_DOUBLE_EQ(per_hour->per_second, 0.01);
  EXPECT_EQ(per_hour->burst, 1u);  // one second's worth, at least one
  for (const char* bad :
       {"", "100", "abc/s", "0/s", "-5/s", "nan/s", "inf/s", "/s"}) {
    auto parsed = ParseRateLimit(bad, 0);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_THAT(std::string(parsed.status().message()),
                HasSubstr("is not a rate"))
        << bad;
  }
  auto day = ParseRateLimit("10/day", 0);
  ASSERT_FALSE(day.ok());
  EXPECT_THAT(std::string(day.status().message()),
              HasSubstr("the unit after \"/\" must be s, min or h"));
}

TEST(RateLimitsTest, ManyThreadsTakeExactlyTheBurst) {
  FakeClock clock;  // time stands still: only the burst may go
  RateLimits limits(clock);
  const RateLimit limit{10, 50};
  std::atomic<int> went{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (limits.Reserve("o", limit, clock.Now()).reserved) ++went;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(went.load(), 50);
}

}  // namespace
}  // namespace egress
