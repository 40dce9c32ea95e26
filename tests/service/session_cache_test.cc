// SessionCache (a worker's own tier) in front of a SessionPool (the shared
// tier), with a fake clock and a real loopback upstream: the lock-free hit,
// parking on a miss, taking from the shared tier, idle expiry, an upstream
// that closed the idle connection, and recreation after consecutive errors.
#include "service/pool/session_cache.h"

#include <chrono>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tests/fakes/counting_observer.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/scripted_upstream.h"
#include "tests/fakes/session_calls.h"
#include "tests/fakes/wait_until.h"

namespace egress {
namespace {

using std::chrono::seconds;

class SessionCacheTest : public ::testing::Test {
 protected:
  SessionCacheTest() {
    options_.keepalive_timeout = seconds(30);
    options_.session.max_errors = 3;
    pool_options_.keepalive_timeout = seconds(30);
    pool_options_.janitor_interval = std::chrono::nanoseconds::zero();
  }

  SessionPool& shared() {
    if (!shared_) {
      shared_ = std::make_unique<SessionPool>(pool_options_, clock_, observer_);
    }
    return *shared_;
  }
  SessionCache& cache() { return Worker(0); }
  // Worker i's own tier, on the same shared tier.
  SessionCache& Worker(int i) {
    if (!caches_[i]) {
      caches_[i] =
          std::make_unique<SessionCache>(options_, shared(), clock_, observer_);
    }
    return *caches_[i];
  }
  static Origin OriginOn(int port) {
    return Origin{"http", "127.0.0.1", static_cast<uint16_t>(port)};
  }
  UpstreamRequest RequestTo(int port) {
    return MakeRequest("127.0.0.1", port, "/echo");
  }
  // Acquire, send, release: what a worker does for one call.
  bool Call(int port, int worker = 0) {
    SessionLease session = Worker(worker).Lease(OriginOn(port));
    return SendWhole(*session, RequestTo(port),
                     Deadline::In(clock_, seconds(10)))
        .ok();
  }

  FakeUpstream upstream_;
  FakeClock clock_;
  CountingObserver observer_;
  SessionCacheOptions options_;
  SessionPoolOptions pool_options_;
  std::unique_ptr<SessionPool> shared_;
  std::unique_ptr<SessionCache> caches_[2];
};

TEST_F(SessionCacheTest, HitReturnsTheSameSessionWithoutTheSharedTier) {
  HttpSession& first = *cache().Lease(OriginOn(upstream_.port()));
  HttpSession& second = *cache().Lease(OriginOn(upstream_.port()));
  EXPECT_EQ(&first, &second);
  EXPECT_EQ(observer_.created.load(), 1);
  EXPECT_EQ(observer_.Leases(LeaseSource::kNew), 1);
  EXPECT_EQ(observer_.Leases(LeaseSource::kLocal), 1);
  EXPECT_EQ(cache().size(), 1u);
  EXPECT_EQ(shared().idle(), 0u);
}

TEST_F(SessionCacheTest, AMissParksTheKeptSessionAndTakesItBackLater) {
  HttpSession& a = *cache().Lease(OriginOn(1001));
  HttpSession& b = *cache().Lease(OriginOn(1002));
  EXPECT_NE(&a, &b);
  EXPECT_EQ(shared().idle(), 1u);  // a waits in the shared tier
  EXPECT_EQ(&*cache().Lease(OriginOn(1001)), &a);
  EXPECT_EQ(observer_.Leases(LeaseSource::kShared), 1);
  EXPECT_EQ(shared().idle(), 1u);  // b now
  EXPECT_EQ(observer_.created.load(), 2);
}

TEST_F(SessionCacheTest, AnotherWorkerFindsTheConnectionAWorkerParked) {
  ASSERT_TRUE(Call(upstream_.port(), 0));
  Worker(0).ParkKept();  // worker 0 went idle
  ASSERT_TRUE(Call(upstream_.port(), 1));
  EXPECT_EQ(upstream_.connections(), 1);
  EXPECT_EQ(observer_.reused.load(), 1);
  EXPECT_EQ(observer_.Leases(LeaseSource::kShared), 1);
}

TEST_F(SessionCacheTest, AWorkerHoldingAnotherOriginDoesNotHideThisOne) {
  ASSERT_TRUE(Call(upstream_.port(), 0));
  // Worker 0 moves on to another origin: its session goes to the shared tier
  // at once, where worker 1 finds it.
  Worker(0).Lease(OriginOn(1001));
  ASSERT_TRUE(Call(upstream_.port(), 1));
  EXPECT_EQ(upstream_.connections(), 1);
}

TEST_F(SessionCacheTest, ReusesConnectionForSameOrigin) {
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Call(upstream_.port()));
  EXPECT_EQ(upstream_.connections(), 1);
  EXPECT_EQ(observer_.reused.load(), 9);
}

TEST_F(SessionCacheTest, IdleSessionIsRecreatedOnNextLease) {
  ASSERT_TRUE(Call(upstream_.port()));
  clock_.Advance(seconds(29));
  ASSERT_TRUE(Call(upstream_.port()));  // within keepalive_timeout: kept
  EXPECT_EQ(observer_.Dropped(DropReason::kIdle), 0);
  clock_.Advance(seconds(31));
  ASSERT_TRUE(Call(upstream_.port()));
  EXPECT_EQ(observer_.Dropped(DropReason::kIdle), 1);
  EXPECT_EQ(observer_.created.load(), 2);
  EXPECT_EQ(upstream_.connections(), 2);
}

TEST_F(SessionCacheTest, AConnectionTheUpstreamClosedIsNeverWrittenTo) {
  ScriptedUpstream upstream(Script::kCloseIdle, std::chrono::milliseconds(50));
  ASSERT_TRUE(Call(upstream.port()));
  // The upstream closes the idle connection. The worker's own session is
  // lent as is (no syscall on the hit path); httplib sees the closed socket
  // before writing and reconnects: no call fails or is retried for it.
  ASSERT_TRUE(WaitUntil([&] { return upstream.closed() == 1; }));
  ASSERT_TRUE(Call(upstream.port()));
  EXPECT_EQ(observer_.stale_retries.load(), 0);
  EXPECT_EQ(upstream.connections(), 2);
  // From the shared tier, a session idle for defaults::kCheckIdleAfter whose
  // connection is dead is dropped before it is lent (another idle one of the
  // origin, if any, is taken instead).
  Worker(0).ParkKept();
  ASSERT_TRUE(WaitUntil([&] { return upstream.closed() == 2; }));
  clock_.Advance(defaults::kCheckIdleAfter);
  ASSERT_TRUE(Call(upstream.port(), 1));
  EXPECT_EQ(observer_.Dropped(DropReason::kUpstreamClosed), 1);
  EXPECT_EQ(observer_.Leases(LeaseSource::kNew), 2);
  EXPECT_EQ(observer_.stale_retries.load(), 0);
  EXPECT_EQ(upstream.connections(), 3);
}

TEST_F(SessionCacheTest, RecreatesSessionAfterThreeErrors) {
  const int dead = UnusedLoopbackPort();
  EXPECT_FALSE(Call(dead));
  EXPECT_FALSE(Call(dead));
  EXPECT_EQ(observer_.Dropped(DropReason::kErrors), 0);
  EXPECT_EQ(observer_.created.load(), 1);
  EXPECT_FALSE(Call(dead));
  EXPECT_EQ(observer_.Dropped(DropReason::kErrors), 1);
  EXPECT_EQ(cache().size(), 0u);
  EXPECT_FALSE(Call(dead));
  EXPECT_EQ(observer_.created.load(), 2);
}

TEST_F(SessionCacheTest, ErrorsAreCountedAcrossWorkers) {
  // A session's consecutive errors travel with it through the shared tier.
  const int dead = UnusedLoopbackPort();
  EXPECT_FALSE(Call(dead, 0));
  Worker(0).ParkKept();
  EXPECT_FALSE(Call(dead, 1));
  Worker(1).ParkKept();
  EXPECT_FALSE(Call(dead, 0));
  EXPECT_EQ(observer_.Dropped(DropReason::kErrors), 1);
  EXPECT_EQ(observer_.created.load(), 1);
}

TEST_F(SessionCacheTest, KeepsSessionWhenErrorsAreInterleavedWithSuccess) {
  // Two failures, a success, two failures: never three in a row.
  HttpSession& session = *cache().Lease(OriginOn(upstream_.port()));
  auto fail = [&] {
    SessionLease s = cache().Lease(OriginOn(upstream_.port()));
    EXPECT_FALSE(
        SendWhole(*s, RequestTo(upstream_.port()), Deadline::In(clock_, {}))
            .ok());
  };
  fail();
  fail();
  ASSERT_TRUE(Call(upstream_.port()));
  fail();
  fail();
  EXPECT_EQ(observer_.Dropped(DropReason::kErrors), 0);
  EXPECT_EQ(&*cache().Lease(OriginOn(upstream_.port())), &session);
  EXPECT_EQ(observer_.created.load(), 1);
}

TEST_F(SessionCacheTest, MaxRequestsOneMeansNoReuse) {
  options_.session.max_requests = 1;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Call(upstream_.port()));
  EXPECT_EQ(observer_.Dropped(DropReason::kMaxRequests), 5);
  EXPECT_EQ(observer_.reused.load(), 0);
  EXPECT_EQ(upstream_.connections(), 5);
}

TEST_F(SessionCacheTest, IdleAndBusyAreReportedAsSessionsMove) {
  {
    SessionLease lease = cache().Lease(OriginOn(1001));
    EXPECT_EQ(observer_.busy.load(), 1);
    EXPECT_EQ(observer_.idle.load(), 0);
  }
  EXPECT_EQ(observer_.busy.load(), 0);
  EXPECT_EQ(observer_.idle.load(), 1);
  cache().Lease(OriginOn(1002));  // 1001 parked, 1002 new
  EXPECT_EQ(observer_.idle.load(), 2);
  caches_[0].reset();
  shared_.reset();
  EXPECT_EQ(observer_.idle.load(), 0);
  EXPECT_EQ(observer_.busy.load(), 0);
}

TEST_F(SessionCacheTest, DestructionDropsEverySessionAsShutdown) {
  cache().Lease(OriginOn(1001));
  cache().Lease(OriginOn(1002));
  caches_[0].reset();
  EXPECT_EQ(observer_.Dropped(DropReason::kShutdown), 1);  // the kept one
  shared_.reset();
  EXPECT_EQ(observer_.Dropped(DropReason::kShutdown), 2);
}

}  // namespace
}  // namespace egress
