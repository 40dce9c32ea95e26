// InflightLimits: per-origin and per-caller slots, their own queues, expiry,
// cancel, and that other origins and callers are never held up. A FakeClock
// drives expiry (no expiry thread); callbacks record what they got.
#include "service/admission/inflight_limits.h"

#include <future>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_clock.h"

namespace egress {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;

// What one Acquire got: a slot (kept until Release) or a status.
struct Outcome {
  bool called = false;
  absl::Status status;
  InflightSlot slot;
};

class InflightLimitsTest : public ::testing::Test {
 protected:
  void Make(size_t per_origin, size_t per_caller, size_t waiting = 10) {
    InflightLimitsOptions options;
    options.max_per_origin = per_origin;
    options.max_per_caller = per_caller;
    options.max_waiting = waiting;
    options.expiry_thread = false;
    limits_ = std::make_unique<InflightLimits>(options, clock_);
  }

  // Acquires for (origin, caller); the outcome lands in outcomes_[i].
  uint64_t Ask(const std::string& origin, const std::string& caller,
               size_t caller_limit = 0, seconds timeout = seconds(10),
               std::optional<size_t> origin_limit = std::nullopt) {
    const size_t i = outcomes_.size();
    outcomes_.push_back(std::make_unique<Outcome>());
    Outcome* out = outcomes_[i].get();
    return limits_->Acquire(
        origin, caller, caller_limit, Deadline::In(clock_, timeout),
        [out](absl::StatusOr<InflightSlot> slot) {
          out->called = true;
          out->status = slot.status();
          if (slot.ok()) out->slot = *std::move(slot);
        },
        nullptr, origin_limit);
  }
  // As Ask, for a call its rate limit lets go only `after` from now.
  uint64_t AskAfter(const std::string& origin, std::chrono::nanoseconds after,
                    seconds timeout = seconds(10)) {
    const size_t i = outcomes_.size();
    outcomes_.push_back(std::make_unique<Outcome>());
    Outcome* out = outcomes_[i].get();
    return limits_->Acquire(
        origin, "alice", 0, Deadline::In(clock_, timeout),
        [out](absl::StatusOr<InflightSlot> slot) {
          out->called = true;
          out->status = slot.status();
          if (slot.ok()) out->slot = *std::move(slot);
        },
        nullptr, std::nullopt, clock_.Now() + after);
  }
  bool Started(size_t i) const {
    return outcomes_[i]->called && outcomes_[i]->status.ok();
  }

  FakeClock clock_;
  std::unique_ptr<InflightLimits> limits_;
  std::vector<std::unique_ptr<Outcome>> outcomes_;
};

TEST_F(InflightLimitsTest, OriginLimitQueuesOnlyThatOrigin) {
  Make(2, 0);
  EXPECT_EQ(Ask("http://slow:80", "a"), 0u);
  EXPECT_EQ(Ask("http://slow:80", "a"), 0u);
  const uint64_t waiting = Ask("http://slow:80", "a");  // third: waits
  EXPECT_NE(waiting, 0u);
  EXPECT_FALSE(outcomes_[2]->called);
  Ask("http://fast:80", "a");  // another origin: at once
  EXPECT_TRUE(Started(3));
  EXPECT_EQ(limits_->InflightOrigin("http://slow:80"), 2u);
  outcomes_[0]->slot.Release();  // frees a slot: the waiting call starts
  EXPECT_TRUE(Started(2));
  EXPECT_EQ(limits_->InflightOrigin("http://slow:80"), 2u);
}

// An origins entry's max_inflight replaces --max_inflight_per_origin for
// its origin, and the refusal names it.
TEST_F(InflightLimitsTest, AnOriginsOwnLimitReplacesTheServiceWideOne) {
  Make(2, 0);
  const std::string own = "http://partner:80";
  Ask(own, "a", 0, seconds(10), 1);
  Ask(own, "a", 0, seconds(10), 1);  // waits: its own limit is 1
  EXPECT_TRUE(Started(0));
  EXPECT_FALSE(outcomes_[1]->called);
  for (int i = 0; i < 3; ++i) Ask("http://other:80", "a");
  EXPECT_TRUE(Started(2) && Started(3));
  EXPECT_FALSE(outcomes_[4]->called)
      << "the others keep --max_inflight_per_origin";
  clock_.Advance(seconds(11));
  limits_->ExpireWaiting();
  ASSERT_TRUE(outcomes_[1]->called);
  EXPECT_THAT(std::string(outcomes_[1]->status.message()),
              HasSubstr("its origins entry's max_inflight=1"));
  outcomes_[0]->slot.Release();
  // 0: no limit for this origin, whatever the service-wide one.
  for (int i = 0; i < 5; ++i) Ask(own, "a", 0, seconds(10), 0);
  for (size_t i = outcomes_.size() - 5; i < outcomes_.size(); ++i) {
    EXPECT_TRUE(Started(i));
  }
}

TEST_F(InflightLimitsTest, CallerLimitQueuesOnlyThatCaller) {
  Make(0, 1);
  Ask("http://a:80", "busy", 1);
  Ask("http://b:80", "busy", 1);  // waits: busy has 1 in flight
  Ask("http://b:80", "calm", 1);  // another caller: at once
  EXPECT_TRUE(Started(0));
  EXPECT_FALSE(outcomes_[1]->called);
  EXPECT_TRUE(Started(2));
  outcomes_[0]->slot.Release();
  EXPECT_TRUE(Started(1));
}

TEST_F(InflightLimitsTest, IdentityLimitOverridesTheDefault) {
  Make(0, 1);
  Ask("http://a:80", "batch", 3);
  Ask("http://a:80", "batch", 3);
  Ask("http://a:80", "batch", 3);
  Ask("http://a:80", "batch", 3);
  EXPECT_TRUE(Started(2));
  EXPECT_FALSE(outcomes_[3]->called);
}

TEST_F(InflightLimitsTest, AWaiterNeedingBothSlotsMovesBetweenQueues) {
  Make(1, 1);
  Ask("http://o:80", "c", 1);  // holds o and c
  Ask("http://o:80", "d", 1);  // waits for o
  Ask("http://p:80", "d", 1);  // d has nothing in flight, p free: starts
  EXPECT_TRUE(Started(2));
  outcomes_[0]->slot.Release();  // o frees, but d is busy: 1 waits for d
  EXPECT_FALSE(outcomes_[1]->called);
  outcomes_[2]->slot.Release();  // d frees: 1 starts
  EXPECT_TRUE(Started(1));
}

TEST_F(InflightLimitsTest, FullQueueRefusesAtOnceNamingTheLimit) {
  Make(1, 0, /*waiting=*/2);
  Ask("http://o:80", "c");
  Ask("http://o:80", "c");
  Ask("http://o:80", "c");
  Ask("http://o:80", "c");
  ASSERT_TRUE(outcomes_[3]->called);
  EXPECT_EQ(outcomes_[3]->status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(outcomes_[3]->status.message()),
              HasSubstr("origin http://o:80 has --max_inflight_per_origin=1 "
                        "calls in flight and 2 waiting"));
}

TEST_F(InflightLimitsTest, AWaitEndsAtItsDeadlineNamingTheLimit) {
  Make(1, 0);
  Ask("http://o:80", "c");
  Ask("http://o:80", "c", 0, seconds(2));
  clock_.Advance(seconds(1));
  limits_->ExpireWaiting();
  EXPECT_FALSE(outcomes_[1]->called);
  clock_.Advance(seconds(1));
  limits_->ExpireWaiting();
  ASSERT_TRUE(outcomes_[1]->called);
  EXPECT_EQ(outcomes_[1]->status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(outcomes_[1]->status.message()),
              HasSubstr("waited 2.000s for a slot of origin http://o:80 "
                        "(--max_inflight_per_origin=1 in flight)"));
  // The expired one is gone: a freed slot goes to nobody, and the next call
  // starts at once.
  outcomes_[0]->slot.Release();
  Ask("http://o:80", "c");
  EXPECT_TRUE(Started(2));
}

TEST_F(InflightLimitsTest, CancelAnswersAWaitingCallOnce) {
  Make(1, 0);
  Ask("http://o:80", "c");
  const uint64_t id = Ask("http://o:80", "c");
  limits_->Cancel(id);
  ASSERT_TRUE(outcomes_[1]->called);
  EXPECT_EQ(outcomes_[1]->status.code(), absl::StatusCode::kCancelled);
  limits_->Cancel(id);  // again: nothing
  outcomes_[0]->slot.Release();
  EXPECT_EQ(limits_->InflightOrigin("http://o:80"), 0u);
}

TEST_F(InflightLimitsTest, NoLimitsMeansEveryCallStarts) {
  Make(0, 0);
  for (int i = 0; i < 1000; ++i) Ask("http://o:80", "c");
  EXPECT_TRUE(Started(999));
  EXPECT_EQ(limits_->InflightOrigin("http://o:80"), 1000u);
  outcomes_.clear();  // every slot given back
  EXPECT_EQ(limits_->InflightOrigin("http://o:80"), 0u);
}

TEST_F(InflightLimitsTest, ExpiryThreadAnswersOnTime) {
  InflightLimitsOptions options;
  options.max_per_origin = 1;
  InflightLimits limits(options, RealClock::Get());
  InflightSlot held;
  limits.Acquire("http://o:80", "c", 0, Deadline::Never(RealClock::Get()),
                 [&](absl::StatusOr<InflightSlot> s) { held = *std::move(s); });
  std::promise<absl::Status> answered;
  const auto start = std::chrono::steady_clock::now();
  limits.Acquire(
      "http://o:80", "c", 0,
      Deadline::In(RealClock::Get(), std::chrono::milliseconds(100)),
      [&](absl::StatusOr<InflightSlot> s) { answered.set_value(s.status()); });
  absl::Status status = answered.get_future().get();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GE(took, std::chrono::milliseconds(95));
  EXPECT_LT(took, std::chrono::seconds(2));
}

// A call its rate limit holds back waits, holding nothing, until its time,
// then asks for its slots like any call.
TEST_F(InflightLimitsTest, ACallWaitsForItsNotBeforeThenForItsSlot) {
  Make(/*per_origin=*/1, /*per_caller=*/0);
  AskAfter("o", std::chrono::milliseconds(100));
  EXPECT_FALSE(outcomes_[0]->called);
  EXPECT_EQ(limits_->delayed(), 1u);
  EXPECT_EQ(limits_->InflightOrigin("o"), 0u);
  limits_->ExpireWaiting();
  EXPECT_FALSE(outcomes_[0]->called);
  clock_.Advance(std::chrono::milliseconds(100));
  limits_->ExpireWaiting();
  EXPECT_TRUE(Started(0));
  EXPECT_EQ(limits_->delayed(), 0u);
  // One whose origin is full at its time waits in the origin's queue.
  AskAfter("o", std::chrono::milliseconds(50));
  clock_.Advance(std::chrono::milliseconds(50));
  limits_->ExpireWaiting();
  EXPECT_FALSE(outcomes_[1]->called);
  outcomes_[0]->slot.Release();
  EXPECT_TRUE(Started(1));
}

TEST_F(InflightLimitsTest, ACallWaitingForItsNotBeforeCanBeCancelled) {
  Make(/*per_origin=*/10, /*per_caller=*/0);
  const uint64_t id = AskAfter("o", std::chrono::seconds(1));
  ASSERT_NE(id, 0u);
  limits_->Cancel(id);
  ASSERT_TRUE(outcomes_[0]->called);
  EXPECT_EQ(outcomes_[0]->status.code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(std::string(outcomes_[0]->status.message()),
              HasSubstr("while waiting for its rate limit"));
  EXPECT_EQ(limits_->delayed(), 0u);
  clock_.Advance(std::chrono::seconds(2));
  limits_->ExpireWaiting();  // nothing more happens to it
  // And one still waiting when egressd stops is told so.
  AskAfter("o", std::chrono::seconds(1));
  limits_.reset();
  ASSERT_TRUE(outcomes_[1]->called);
  EXPECT_EQ(outcomes_[1]->status.code(), absl::StatusCode::kCancelled);
}

TEST(InflightLimitsThreadTest, TheExpiryThreadStartsACallAtItsNotBefore) {
  RealClock clock;
  InflightLimits limits(InflightLimitsOptions{}, clock);
  std::promise<MonoTime> started;
  const MonoTime asked = clock.Now();
  limits.Acquire(
      "o", "alice", 0, Deadline::In(clock, seconds(10)),
      [&](absl::StatusOr<InflightSlot> slot) {
        EXPECT_TRUE(slot.ok());
        started.set_value(clock.Now());
      },
      nullptr, std::nullopt, asked + std::chrono::milliseconds(50));
  std::future<MonoTime> at = started.get_future();
  ASSERT_EQ(at.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_GE(at.get() - asked, std::chrono::milliseconds(50));
}

}  // namespace
}  // namespace egress
