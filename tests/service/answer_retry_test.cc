// Retry-After retries: the header's two forms, the budget, and every outcome
// of DecideRetry, from facts alone.
#include "service/pool/answer_retry.h"

#include <chrono>

#include "gtest/gtest.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const absl::Time kNow = absl::FromUnixSeconds(1764500000);  // 2025-11-30

TEST(RetryAfterTest, DeltaSecondsAndHttpDates) {
  EXPECT_EQ(RetryAfter({{"Retry-After", "3"}}, kNow), seconds(3));
  EXPECT_EQ(RetryAfter({{"retry-after", " 0 "}}, kNow), seconds(0));
  const std::string date =
      absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", kNow + absl::Seconds(90),
                       absl::UTCTimeZone());
  EXPECT_EQ(RetryAfter({{"Retry-After", date}}, kNow), seconds(90));
  const std::string past =
      absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", kNow - absl::Seconds(5),
                       absl::UTCTimeZone());
  EXPECT_EQ(RetryAfter({{"Retry-After", past}}, kNow), seconds(0));
  EXPECT_FALSE(RetryAfter({}, kNow).has_value());
  EXPECT_FALSE(RetryAfter({{"Retry-After", "soon"}}, kNow).has_value());
  EXPECT_FALSE(RetryAfter({{"Retry-After", "-1"}}, kNow).has_value());
  EXPECT_FALSE(
      RetryAfter({{"Retry-After", "99999999999999"}}, kNow).has_value());
}

TEST(RetryBudgetTest, BurstThenAShareOfCalls) {
  RetryBudget budget(0.5, 2);
  EXPECT_TRUE(budget.TryRetry());
  EXPECT_TRUE(budget.TryRetry());
  EXPECT_FALSE(budget.TryRetry());  // the reserve is spent
  budget.OnCall();
  EXPECT_FALSE(budget.TryRetry());  // half a token
  budget.OnCall();
  EXPECT_TRUE(budget.TryRetry());  // two calls, one retry
  for (int i = 0; i < 100; ++i) budget.OnCall();
  EXPECT_TRUE(budget.TryRetry());
  EXPECT_TRUE(budget.TryRetry());
  EXPECT_FALSE(budget.TryRetry());  // never more than the burst saved up

  RetryBudget none(0, 0);
  none.OnCall();
  EXPECT_FALSE(none.TryRetry());
}

UpstreamRequest Get(int max_attempts) {
  UpstreamRequest r;
  r.method = "GET";
  r.retry.max_attempts = max_attempts;
  return r;
}

RetryOutcome Decide(const UpstreamRequest& r, int status,
                    const HeaderList& headers, int answers = 1,
                    std::chrono::nanoseconds remaining = seconds(30),
                    RetryBudget* budget = nullptr) {
  return DecideRetry(r, status, headers, answers, remaining, kNow, budget)
      .outcome;
}

TEST(DecideRetryTest, OnlyWhatTheCallAndTheAnswerAskFor) {
  const HeaderList after{{"Retry-After", "1"}};
  EXPECT_EQ(Decide(Get(3), 429, after), RetryOutcome::kRetry);
  EXPECT_EQ(Decide(Get(3), 503, after), RetryOutcome::kRetry);
  EXPECT_EQ(DecideRetry(Get(3), 429, after, 1, seconds(30), kNow, nullptr).wait,
            seconds(1));
  // Not asked: no opt-in, another status, no Retry-After, not idempotent.
  EXPECT_EQ(Decide(Get(1), 429, after), RetryOutcome::kNotAsked);
  EXPECT_EQ(Decide(Get(3), 500, after), RetryOutcome::kNotAsked);
  EXPECT_EQ(Decide(Get(3), 429, {}), RetryOutcome::kNotAsked);
  UpstreamRequest post = Get(3);
  post.method = "POST";
  EXPECT_EQ(Decide(post, 503, after), RetryOutcome::kNotAsked);
  post.headers = {{"Idempotency-Key", "k1"}};
  EXPECT_EQ(Decide(post, 503, after), RetryOutcome::kRetry);
  // Refused: attempts used, too long a wait, no budget.
  EXPECT_EQ(Decide(Get(3), 429, after, 3), RetryOutcome::kAttempts);
  EXPECT_EQ(Decide(Get(3), 429, after, 1, milliseconds(900)),
            RetryOutcome::kTooLong);
  UpstreamRequest capped = Get(3);
  capped.retry.max_wait = milliseconds(500);
  EXPECT_EQ(Decide(capped, 429, after), RetryOutcome::kTooLong);
  RetryBudget empty(0, 0);
  EXPECT_EQ(Decide(Get(3), 429, after, 1, seconds(30), &empty),
            RetryOutcome::kNoBudget);
}

}  // namespace
}  // namespace egress
