// SessionCache with a fake clock and a real loopback upstream: hits, misses,
// idle expiry, LRU eviction and recreation after consecutive errors.
#include "service/session_cache.h"

#include <chrono>
#include <string>

#include "gtest/gtest.h"
#include "tests/fakes/counting_observer.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_upstream.h"

namespace egress {
namespace {

using std::chrono::seconds;

class SessionCacheTest : public ::testing::Test {
 protected:
  SessionCacheTest() {
    options_.max_sessions = 3;
    options_.keepalive_timeout = seconds(30);
    options_.session.max_errors = 3;
  }

  SessionCache& cache() {
    if (!cache_)
      cache_ = std::make_unique<SessionCache>(options_, clock_, observer_);
    return *cache_;
  }
  static Origin OriginOn(int port) {
    return Origin{"http", "127.0.0.1", static_cast<uint16_t>(port)};
  }
  UpstreamRequest RequestTo(int port) {
    UpstreamRequest request;
    request.method = "GET";
    request.origin = OriginOn(port);
    request.target = "/echo";
    return request;
  }
  // Acquire, send, release: what a worker does for one call.
  bool Call(int port) {
    SessionLease session = cache().Lease(OriginOn(port));
    return session->Send(RequestTo(port), Deadline::In(clock_, seconds(10)))
        .ok();
  }

  FakeUpstream upstream_;
  FakeClock clock_;
  CountingObserver observer_;
  SessionCacheOptions options_;
  std::unique_ptr<SessionCache> cache_;
};

TEST_F(SessionCacheTest, HitReturnsTheSameSession) {
  HttpSession& first = *cache().Lease(OriginOn(upstream_.port()));
  HttpSession& second = *cache().Lease(OriginOn(upstream_.port()));
  EXPECT_EQ(&first, &second);
  EXPECT_EQ(observer_.created.load(), 1);
  EXPECT_EQ(cache().size(), 1u);
}

TEST_F(SessionCacheTest, MissCreatesOneSessionPerOrigin) {
  HttpSession& a = *cache().Lease(OriginOn(1001));
  HttpSession& b = *cache().Lease(OriginOn(1002));
  HttpSession& c = *cache().Lease(Origin{"http", "localhost", 1001});
  EXPECT_NE(&a, &b);
  EXPECT_NE(&a, &c);
  EXPECT_EQ(cache().size(), 3u);
  EXPECT_EQ(observer_.created.load(), 3);
}

TEST_F(SessionCacheTest, ReusesConnectionForSameOrigin) {
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Call(upstream_.port()));
  EXPECT_EQ(upstream_.connections(), 1);
  EXPECT_EQ(observer_.reused.load(), 9);
}

TEST_F(SessionCacheTest, IdleSessionIsRecreatedOnNextAcquire) {
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

TEST_F(SessionCacheTest, DropIdleClosesOnlyExpiredSessions) {
  cache().Lease(OriginOn(1001));
  clock_.Advance(seconds(20));
  cache().Lease(OriginOn(1002));
  clock_.Advance(seconds(20));  // 1001 idle 40 s, 1002 idle 20 s
  cache().DropIdle();
  EXPECT_EQ(cache().size(), 1u);
  EXPECT_EQ(observer_.Dropped(DropReason::kIdle), 1);
}

TEST_F(SessionCacheTest, EvictsLeastRecentlyUsedBeyondTheBound) {
  HttpSession& first = *cache().Lease(OriginOn(1001));
  cache().Lease(OriginOn(1002));
  cache().Lease(OriginOn(1003));
  cache().Lease(OriginOn(1001));  // 1001 is now the most recent
  cache().Lease(OriginOn(1004));  // evicts 1002
  EXPECT_EQ(cache().size(), 3u);
  EXPECT_EQ(observer_.Dropped(DropReason::kEvicted), 1);
  EXPECT_EQ(&*cache().Lease(OriginOn(1001)), &first);
  cache().Lease(OriginOn(1002));  // a miss again: recreated
  EXPECT_EQ(observer_.created.load(), 5);
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

TEST_F(SessionCacheTest, KeepsSessionWhenErrorsAreInterleavedWithSuccess) {
  // Two failures, a success, two failures: never three in a row.
  HttpSession& session = *cache().Lease(OriginOn(upstream_.port()));
  auto fail = [&] {
    SessionLease s = cache().Lease(OriginOn(upstream_.port()));
    EXPECT_FALSE(
        s->Send(RequestTo(upstream_.port()), Deadline::In(clock_, {})).ok());
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

TEST_F(SessionCacheTest, DestructionDropsEverySessionAsShutdown) {
  cache().Lease(OriginOn(1001));
  cache().Lease(OriginOn(1002));
  cache_.reset();
  EXPECT_EQ(observer_.Dropped(DropReason::kShutdown), 2);
}

}  // namespace
}  // namespace egress
