// EgressWorker with a real loopback upstream: a call's cancel reaches its own
// exchange and never the next one, the drain's AbortCurrent reaches the call
// being served, and a session lent for an exchange goes back (or is dropped)
// when the exchange ends. No gRPC: runs under TSan.
#include "service/pool/egress_worker.h"

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "service/pool/whole_response.h"
#include "tests/fakes/counting_observer.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/session_calls.h"
#include "tests/fakes/wait_until.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class EgressWorkerTest : public ::testing::Test {
 protected:
  UpstreamRequest Get(const std::string& target, int port = 0) {
    return MakeRequest("127.0.0.1", port != 0 ? port : upstream_.port(),
                       target);
  }
  Deadline Within(milliseconds d = milliseconds(10000)) {
    return Deadline::In(RealClock::Get(), d);
  }
  // As Do: the whole response.
  absl::StatusOr<UpstreamResponse> Perform(const UpstreamRequest& request,
                                           const Deadline& deadline,
                                           ExchangeCanceller& canceller) {
    WholeResponseSink sink(defaults::kMaxResponseBytes, request.origin.Key(),
                           nullptr);
    absl::StatusOr<ExchangeSummary> done =
        worker_.Perform(CallPlan{request, deadline, canceller}, sink);
    if (!done.ok()) return done.status();
    return sink.Finish(*done);
  }
  // Waits (bounded) until the upstream has received `n` requests: the
  // exchange a test means to interrupt is then under way.
  void WaitForUpstreamRequests(int n) {
    ASSERT_TRUE(
        WaitUntil([&] { return upstream_.requests() >= n; }, seconds(10)));
    ASSERT_EQ(upstream_.requests(), n);
  }

  FakeUpstream upstream_;
  CountingObserver observer_;
  SessionPool shared_{SessionPoolOptions{}, RealClock::Get(), observer_};
  EgressWorker worker_{0, SessionCacheOptions{}, shared_, RealClock::Get(),
                       observer_};
};

TEST_F(EgressWorkerTest, ALateCancelNeverReachesTheNextCall) {
  ExchangeCanceller first;
  ASSERT_TRUE(Perform(Get("/echo"), Within(), first).ok());
  // The first caller goes away after its answer: its cancel must not touch
  // the session the next caller gets.
  first.Cancel();
  ExchangeCanceller second;
  absl::StatusOr<UpstreamResponse> next =
      Perform(Get("/echo"), Within(), second);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(next->connection_reused);
  EXPECT_EQ(observer_.created.load(), 1);
}

TEST_F(EgressWorkerTest, ALateCancelArrivingDuringTheNextCallLeavesItAlone) {
  ExchangeCanceller first;
  ASSERT_TRUE(Perform(Get("/echo"), Within(), first).ok());
  // The next call runs on the same session; the first caller's cancel lands
  // in the middle of it.
  ExchangeCanceller second;
  auto next = std::async(std::launch::async, [&] {
    return Perform(Get("/slow/300"), Within(), second);
  });
  WaitForUpstreamRequests(2);
  first.Cancel();
  absl::StatusOr<UpstreamResponse> result = next.get();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->connection_reused);
}

TEST_F(EgressWorkerTest, ACancelDuringAnExchangeAbortsOnlyThatExchange) {
  ExchangeCanceller first;
  auto slow = std::async(std::launch::async, [&] {
    return Perform(Get("/slow/1500"), Within(), first);
  });
  WaitForUpstreamRequests(1);
  const auto cancelled_at = std::chrono::steady_clock::now();
  first.Cancel();
  absl::StatusOr<UpstreamResponse> result = slow.get();
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, seconds(1));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled)
      << result.status();
  // The next call on the same worker goes through, and the abandoned
  // exchange did not count against the session.
  ExchangeCanceller second;
  absl::StatusOr<UpstreamResponse> next =
      Perform(Get("/echo"), Within(), second);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(observer_.Dropped(DropReason::kErrors), 0);
}

TEST_F(EgressWorkerTest, ACancelBeforeTheExchangeStopsItBeforeTheUpstream) {
  ExchangeCanceller canceller;
  canceller.Cancel();
  absl::StatusOr<UpstreamResponse> result =
      Perform(Get("/echo"), Within(), canceller);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(upstream_.requests(), 0);
}

TEST_F(EgressWorkerTest, AbortCurrentCancelsTheCallBeingServed) {
  ExchangeCanceller canceller;
  auto slow = std::async(std::launch::async, [&] {
    return Perform(Get("/slow/1500"), Within(), canceller);
  });
  WaitForUpstreamRequests(1);
  worker_.AbortCurrent();  // the drain time is over
  EXPECT_EQ(slow.get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(canceller.cancelled());
  // Between calls it reaches nothing.
  worker_.AbortCurrent();
  ExchangeCanceller next;
  EXPECT_TRUE(Perform(Get("/echo"), Within(), next).ok());
}

TEST_F(EgressWorkerTest, StreamsTakeTheSamePath) {
  class Collect final : public ResponseSink {
   public:
    bool OnHead(UpstreamHead head, std::optional<uint64_t>) override {
      status = head.status;
      return true;
    }
    bool OnBody(const char* data, size_t size) override {
      body.append(data, size);
      return true;
    }
    absl::Status AbortStatus() const override { return absl::OkStatus(); }
    int status = 0;
    std::string body;
  } sink;
  ExchangeCanceller canceller;
  const UpstreamRequest request = Get("/stream/1000");
  const Deadline deadline = Within();
  CallPlan call{request, deadline, canceller};
  call.idle_timeout = seconds(5);
  absl::StatusOr<ExchangeSummary> result = worker_.Perform(call, sink);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(sink.status, 200);
  EXPECT_EQ(sink.body.size(), 1000u);
}

TEST_F(EgressWorkerTest, ABrokenSessionIsDroppedWhenItsLeaseEnds) {
  int dead_port;
  {
    FakeUpstream gone;
    dead_port = gone.port();
  }
  for (int i = 0; i < 3; ++i) {
    ExchangeCanceller canceller;
    EXPECT_FALSE(Perform(Get("/", dead_port), Within(), canceller).ok());
  }
  EXPECT_EQ(observer_.Dropped(DropReason::kErrors), 1);
  EXPECT_EQ(worker_.sessions().size(), 0u);
}

}  // namespace
}  // namespace egress
