// SessionPool, the shared tier: parking and taking (most recently used
// first), the per-origin and total bounds (least recently used closed first),
// idle expiry by the janitor with no caller around, and, under TSan, many
// workers parking and taking at once without a session ever lent twice.
#include "service/pool/session_pool.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fakes/counting_observer.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/wait_until.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class SessionPoolTest : public ::testing::Test {
 protected:
  SessionPoolTest() {
    options_.max_idle_per_origin = 3;
    options_.max_idle_connections = 5;
    options_.keepalive_timeout = seconds(30);
    options_.janitor_interval = std::chrono::nanoseconds::zero();
  }

  SessionPool& pool() {
    if (!pool_)
      pool_ = std::make_unique<SessionPool>(options_, clock_, observer_);
    return *pool_;
  }
  static Origin OriginOn(int port) {
    return Origin{"http", "127.0.0.1", static_cast<uint16_t>(port)};
  }
  static std::string KeyOf(int port) { return OriginOn(port).Key(); }
  // A session used now (then the clock moves on, so each is distinct in
  // recency), as a worker would hand it over.
  std::unique_ptr<HttpSession> Used(int port,
                                    const SessionOptions& options = {}) {
    auto session = std::make_unique<HttpSession>(OriginOn(port), options,
                                                 clock_, observer_);
    observer_.OnPoolChange(session->key(), 0, +1);  // what a lease reports
    observer_.OnPoolChange(session->key(), +1, -1);
    clock_.Advance(seconds(1));
    return session;
  }
  HttpSession* Park(int port) {
    std::unique_ptr<HttpSession> session = Used(port);
    HttpSession* raw = session.get();
    pool().Park(std::move(session));
    return raw;
  }

  FakeClock clock_;
  CountingObserver observer_;
  SessionPoolOptions options_;
  std::unique_ptr<SessionPool> pool_;
};

// An origins entry's sessions (another pool tag) are never lent for the
// origin's other sessions, and keep their own keep-alive and idle bounds.
TEST_F(SessionPoolTest, SessionsOfAnEntryArePooledApartWithTheirOwnBounds) {
  SessionOptions own;
  own.pool_tag = "client-cert-a";
  own.keepalive_timeout = seconds(5);
  own.max_idle = 1;
  HttpSession* plain = Park(1001);
  pool().Park(Used(1001, own));
  std::unique_ptr<HttpSession> newer = Used(1001, own);
  HttpSession* tagged = newer.get();
  pool().Park(std::move(newer));
  EXPECT_EQ(observer_.Dropped(DropReason::kEvicted), 1) << "its max_idle: 1";
  EXPECT_EQ(tagged->pool_key(), KeyOf(1001) + "#client-cert-a");
  std::unique_ptr<HttpSession> taken = pool().Take(KeyOf(1001));
  EXPECT_EQ(taken.get(), plain);
  pool().Park(std::move(taken));
  // Past its own 5 s, the entry's session expires; the other keeps 30 s.
  clock_.Advance(seconds(6));
  EXPECT_EQ(pool().DropExpired(), 1u);
  EXPECT_EQ(pool().Take(KeyOf(1001) + "#client-cert-a"), nullptr);
  EXPECT_NE(pool().Take(KeyOf(1001)), nullptr);
}

TEST_F(SessionPoolTest, NothingParkedNothingTaken) {
  EXPECT_EQ(pool().Take(KeyOf(1001)), nullptr);
}

TEST_F(SessionPoolTest, TakesTheMostRecentlyUsedSessionOfTheOrigin) {
  HttpSession* older = Park(1001);
  HttpSession* newer = Park(1001);
  Park(1002);
  EXPECT_EQ(pool().Take(KeyOf(1001)).get(), newer);
  EXPECT_EQ(pool().Take(KeyOf(1001)).get(), older);
  EXPECT_EQ(pool().Take(KeyOf(1001)), nullptr);
  EXPECT_EQ(pool().idle(), 1u);
}

TEST_F(SessionPoolTest, OverThePerOriginBoundTheOriginsOldestIsClosed) {
  HttpSession* oldest = Park(1001);
  Park(1002);
  Park(1001);
  Park(1001);
  Park(1001);  // a fourth for 1001: its oldest goes, 1002 stays
  EXPECT_EQ(observer_.Dropped(DropReason::kEvicted), 1);
  EXPECT_EQ(pool().idle(), 4u);
  std::set<HttpSession*> left;
  while (auto s = pool().Take(KeyOf(1001))) left.insert(s.get());
  EXPECT_EQ(left.size(), 3u);
  EXPECT_EQ(left.count(oldest), 0u);
  EXPECT_NE(pool().Take(KeyOf(1002)), nullptr);
}

TEST_F(SessionPoolTest, OverTheTotalBoundTheLeastRecentlyUsedOfAllIsClosed) {
  // Five origins, likely on different shards; the sixth session evicts the
  // least recently used of them all, whichever shard it is on.
  for (int port = 1001; port <= 1005; ++port) Park(port);
  Park(1006);
  EXPECT_EQ(observer_.Dropped(DropReason::kEvicted), 1);
  EXPECT_EQ(pool().idle(), 5u);
  EXPECT_EQ(pool().Take(KeyOf(1001)), nullptr);
  for (int port = 1002; port <= 1006; ++port) {
    EXPECT_NE(pool().Take(KeyOf(port)), nullptr) << port;
  }
}

TEST_F(SessionPoolTest, AnExpiredSessionIsNeverTaken) {
  Park(1001);
  clock_.Advance(seconds(31));
  EXPECT_EQ(pool().Take(KeyOf(1001)), nullptr);
  EXPECT_EQ(observer_.Dropped(DropReason::kIdle), 1);
}

TEST_F(SessionPoolTest, DropExpiredClosesOnlyTheExpired) {
  Park(1001);  // used at t=0
  clock_.Advance(seconds(20));
  Park(1002);                   // used at t=21
  clock_.Advance(seconds(11));  // t=33: 1001 idle 33 s, 1002 idle 12 s
  EXPECT_EQ(pool().DropExpired(), 1u);
  EXPECT_EQ(pool().idle(), 1u);
  EXPECT_NE(pool().Take(KeyOf(1002)), nullptr);
}

TEST_F(SessionPoolTest, ParkedOutOfOrderStillExpiresInOrderOfUse) {
  // A worker may park its session a little after using it: the list is kept
  // in order of use, so the sweep still stops at the first fresh one.
  std::unique_ptr<HttpSession> early = Used(1001);  // used at t=0
  Park(1002);                                       // used at t=1, parked now
  pool().Park(std::move(early));                    // parked last
  clock_.Advance(seconds(29));  // t=31: 1001 idle 31 s, 1002 idle 30 s
  EXPECT_EQ(pool().DropExpired(), 1u);
  EXPECT_EQ(pool().Take(KeyOf(1001)), nullptr);
}

TEST_F(SessionPoolTest, TheJanitorClosesIdleSessionsWithNobodyCalling) {
  options_.keepalive_timeout = milliseconds(100);
  options_.janitor_interval = milliseconds(20);
  SessionPool pool(options_, RealClock::Get(), observer_);
  for (int port = 1001; port <= 1003; ++port) {
    pool.Park(std::make_unique<HttpSession>(OriginOn(port), SessionOptions(),
                                            RealClock::Get(), observer_));
  }
  EXPECT_TRUE(WaitUntil([&] { return pool.idle() == 0; }, seconds(5)));
  EXPECT_EQ(observer_.Dropped(DropReason::kIdle), 3);
}

TEST_F(SessionPoolTest, DestructionClosesEverySessionAsShutdown) {
  Park(1001);
  Park(1002);
  pool_.reset();
  EXPECT_EQ(observer_.Dropped(DropReason::kShutdown), 2);
  EXPECT_EQ(observer_.idle.load(), 0);
}

TEST_F(SessionPoolTest, ManyWorkersAtOnceNeverShareASession) {
  // Eight threads take and park sessions of four origins as fast as they can,
  // with a live janitor. Each session taken is recorded as lent; taking one
  // that is already lent would be the bug.
  options_.max_idle_per_origin = 4;
  options_.max_idle_connections = 10;
  options_.janitor_interval = milliseconds(1);
  options_.keepalive_timeout = seconds(30);
  SessionPool pool(options_, RealClock::Get(), observer_);
  std::mutex mu;
  std::set<HttpSession*> lent;
  std::atomic<int> twice{0};
  std::atomic<int> made{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 8; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        const Origin origin = OriginOn(1001 + (i + t) % 4);
        std::unique_ptr<HttpSession> s = pool.Take(origin.Key());
        if (s == nullptr) {
          s = std::make_unique<HttpSession>(origin, SessionOptions(),
                                            RealClock::Get(), observer_);
          ++made;
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!lent.insert(s.get()).second) ++twice;
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          lent.erase(s.get());
        }
        pool.Park(std::move(s));
      }
    });
  }
  for (std::thread& w : workers) w.join();
  EXPECT_EQ(twice.load(), 0);
  EXPECT_LE(pool.idle(), 10u);
  EXPECT_EQ(static_cast<int>(pool.idle()),
            made.load() - observer_.Dropped(DropReason::kEvicted));
}

}  // namespace
}  // namespace egress
