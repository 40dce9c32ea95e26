// PerformCall over a real loopback upstream: Retry-After answers are retried
// without reaching the call's sink and without closing the connection, and a
// call cancelled while it waits to retry ends at once. (Stale-connection
// resends: http_session_faults_test.) No gRPC: runs under TSan.
#include "service/pool/attempt_loop.h"

#include <chrono>
#include <future>
#include <string>

#include "gtest/gtest.h"
#include "service/base/clock.h"
#include "tests/fakes/counting_observer.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/session_calls.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Retries every answer that asks for it, after `wait`, up to `attempts`.
std::function<RetryDecision(const UpstreamHead&, int)> RetryUpTo(
    int attempts, std::chrono::nanoseconds wait) {
  return [attempts, wait](const UpstreamHead& head, int answers) {
    if (head.status != 429 && head.status != 503) return RetryDecision{};
    if (answers >= attempts) return RetryDecision{RetryOutcome::kAttempts};
    return RetryDecision{RetryOutcome::kRetry, wait};
  };
}

// Keeps what reaches the call: every head, and the body.
class Collect final : public ResponseSink {
 public:
  bool OnHead(UpstreamHead head, std::optional<uint64_t>) override {
    heads.push_back(std::move(head));
    return true;
  }
  bool OnBody(const char* data, size_t size) override {
    body.append(data, size);
    return true;
  }
  absl::Status AbortStatus() const override { return absl::OkStatus(); }
  std::vector<UpstreamHead> heads;
  std::string body;
};

class AttemptLoopTest : public ::testing::Test {
 protected:
  absl::StatusOr<ExchangeSummary> Run(const CallPlan& call,
                                      ResponseSink& sink) {
    return PerformCall(call, sink,
                       [&](SessionUse use) { return use(session_); });
  }

  FakeUpstream upstream_;
  CountingObserver observer_;
  HttpSession session_{Origin{"http", "127.0.0.1", upstream_.port()},
                       SessionOptions{}, RealClock::Get(), observer_};
  ExchangeCanceller canceller_;
};

TEST_F(AttemptLoopTest, RetriedAnswersNeverReachTheSinkAndKeepTheConnection) {
  const UpstreamRequest request =
      MakeRequest("127.0.0.1", upstream_.port(), "/busy/a/2/0");
  const Deadline deadline = Deadline::In(RealClock::Get(), seconds(10));
  CallPlan call{request, deadline, canceller_};
  call.decide_retry = RetryUpTo(3, milliseconds(1));
  Collect sink;
  absl::StatusOr<ExchangeSummary> done = Run(call, sink);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(sink.heads.size(), 1u);
  EXPECT_EQ(sink.heads[0].status, 200);
  EXPECT_EQ(sink.heads[0].attempts, 3);
  EXPECT_GE(sink.heads[0].retry_wait, milliseconds(2));
  EXPECT_EQ(sink.body, "ok after 2");
  EXPECT_EQ(done->attempts, 3);
  EXPECT_EQ(done->retry_wait, sink.heads[0].retry_wait);
  // The two 429s' bodies were read and dropped: one connection served all.
  EXPECT_EQ(observer_.opened.load(), 1);
  EXPECT_EQ(observer_.reused.load(), 2);
  EXPECT_EQ(session_.consecutive_errors(), 0);
}

TEST_F(AttemptLoopTest, AnAnswerNotRetriedGoesToTheSinkAsItIs) {
  const UpstreamRequest request =
      MakeRequest("127.0.0.1", upstream_.port(), "/busy/b/5/0");
  const Deadline deadline = Deadline::In(RealClock::Get(), seconds(10));
  CallPlan call{request, deadline, canceller_};
  call.decide_retry = RetryUpTo(2, milliseconds(1));
  Collect sink;
  absl::StatusOr<ExchangeSummary> done = Run(call, sink);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(sink.heads.size(), 1u);
  EXPECT_EQ(sink.heads[0].status, 429);
  EXPECT_EQ(sink.heads[0].attempts, 2);
  EXPECT_EQ(sink.body, "busy");
}

TEST_F(AttemptLoopTest, ACallCancelledWhileWaitingToRetryEndsAtOnce) {
  const UpstreamRequest request =
      MakeRequest("127.0.0.1", upstream_.port(), "/busy/c/1/0");
  const Deadline deadline = Deadline::In(RealClock::Get(), seconds(60));
  CallPlan call{request, deadline, canceller_};
  // A wait far longer than the test: only the cancel can end it.
  call.decide_retry = RetryUpTo(2, seconds(600));
  Collect sink;
  auto waiting =
      std::async(std::launch::async, [&] { return Run(call, sink); });
  // Whenever the cancel lands (before, during or after the first exchange),
  // the call ends as CANCELLED without its answer.
  canceller_.Cancel();
  ASSERT_EQ(waiting.wait_for(seconds(30)), std::future_status::ready);
  absl::StatusOr<ExchangeSummary> done = waiting.get();
  EXPECT_TRUE(absl::IsCancelled(done.status())) << done.status();
  EXPECT_TRUE(sink.heads.empty());
}

}  // namespace
}  // namespace egress
