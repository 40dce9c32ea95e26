// SharedRateLimits against Debian's redis-server on loopback: two instances
// (two replicas) hold one limit between them; calls made from the lease need
// no round trip; Redis stopped (local shares, counted, no call waiting longer
// than --redis_timeout) and started again (shared within a second); a Redis
// asleep (DEBUG SLEEP) no call waits for longer than the bound; never
// reachable from the start; AUTH and TLS with a certificate the test makes;
// a hostile "Redis" answering nonsense or without end; the options' errors.
#include "service/admission/shared_rate_limits.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/child_process.h"
#include "tests/fakes/redis_server.h"
#include "tests/fakes/test_certs.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

struct Counts {
  std::atomic<int> fallback{0};
  std::atomic<int> trips_for_calls{0};
  std::atomic<int> trips_ahead{0};
  std::atomic<int> downs{0};

  SharedRateObserver Observer() {
    SharedRateObserver o;
    o.on_fallback = [this] { ++fallback; };
    o.on_round_trip = [this](bool ahead) {
      ++(ahead ? trips_ahead : trips_for_calls);
    };
    o.on_redis_state = [this](bool up) {
      if (!up) ++downs;
    };
    return o;
  }
};

std::unique_ptr<SharedRateLimits> Make(const RedisOptions& options,
                                       Counts* counts = nullptr) {
  auto made = SharedRateLimits::Create(
      options, RealClock::Get(),
      counts ? counts->Observer() : SharedRateObserver{});
  EXPECT_TRUE(made.ok()) << made.status();
  return made.ok() ? *std::move(made) : nullptr;
}

RedisOptions Options(const std::string& address, const std::string& prefix) {
  RedisOptions options;
  options.address = address;
  options.key_prefix = prefix;
  options.timeout = milliseconds(500);  // sanitizers on 2 cores
  return options;
}

MonoTime Soon(milliseconds d) { return std::chrono::steady_clock::now() + d; }

// Offers `per_second` calls (no waiting) from each of `limits` for `seconds`,
// paced; returns the calls let through.
int Offer(const std::vector<SharedRateLimits*>& limits, const RateLimit& limit,
          double per_second, double seconds) {
  std::atomic<int> through{0};
  std::vector<std::thread> threads;
  for (SharedRateLimits* one : limits) {
    threads.emplace_back([&, one] {
      const MonoTime start = std::chrono::steady_clock::now();
      const int calls = static_cast<int>(per_second * seconds);
      for (int i = 0; i < calls; ++i) {
        std::this_thread::sleep_until(
            start + std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::duration<double>(i / per_second)));
        const MonoTime now = std::chrono::steady_clock::now();
        if (one->Reserve("origin o", limit, now).reserved) ++through;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return through.load();
}

class SharedRateLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis_.Start()) << redis_.log_path(); }
  RedisServer redis_{TempDir()};
};

TEST_F(SharedRateLimitsTest, TwoReplicasHoldOneLimitBetweenThem) {
  Counts counts;
  auto a = Make(Options(redis_.address(), "two"), &counts);
  auto b = Make(Options(redis_.address(), "two"), &counts);
  ASSERT_TRUE(a->WaitShared(Soon(milliseconds(5000))));
  ASSERT_TRUE(b->WaitShared(Soon(milliseconds(5000))));
  // 100/s with a burst of 10, 150/s offered by each for 3 s: 10 + 300 may
  // go, whichever replica asks.
  const RateLimit limit{100, 10};
  const int through = Offer({a.get(), b.get()}, limit, 150, 3);
  EXPECT_GE(through, 280);
  EXPECT_LE(through, 340);
  EXPECT_EQ(counts.fallback.load(), 0);
  // Both replicas are counted (each sends a heartbeat every second).
  std::this_thread::sleep_for(milliseconds(1200));
  EXPECT_EQ(a->replicas_seen(), 2u);
}

TEST_F(SharedRateLimitsTest, BusyKeysLeaseAheadAndMakeNoRoundTrips) {
  Counts counts;
  auto a = Make(Options(redis_.address(), "ahead"), &counts);
  ASSERT_TRUE(a->WaitShared(Soon(milliseconds(5000))));
  // 200 calls/s for 2 s under a limit far above them: all go, and most find
  // a call leased ahead in the background.
  const int through = Offer({a.get()}, {10000, 10000}, 200, 2);
  EXPECT_EQ(through, 400);
  EXPECT_GT(counts.trips_ahead.load(), 0);
  EXPECT_LT(counts.trips_for_calls.load(), 400 / 4);
  EXPECT_EQ(counts.fallback.load(), 0);
}

TEST_F(SharedRateLimitsTest, WaitingCallsGetLaterTurnsInOrder) {
  auto a = Make(Options(redis_.address(), "wait"));
  ASSERT_TRUE(a->WaitShared(Soon(milliseconds(5000))));
  const RateLimit limit{10, 1};
  const MonoTime now = std::chrono::steady_clock::now();
  RateDecision first = a->Reserve("k", limit, now);
  ASSERT_TRUE(first.reserved);
  // The next may wait up to 1 s: its turn is about 100 ms on.
  RateDecision second = a->Reserve("k", limit, now + milliseconds(1000));
  ASSERT_TRUE(second.reserved);
  EXPECT_GT(second.at, now + milliseconds(50));
  EXPECT_LT(second.at, now + milliseconds(400));
  // One that may not wait is refused, with when its turn would come.
  RateDecision third = a->Reserve("k", limit, std::chrono::steady_clock::now());
  EXPECT_FALSE(third.reserved);
  EXPECT_GT(third.at, second.at);
}

TEST_F(SharedRateLimitsTest, AGivenBackCallGoesToTheNext) {
  auto a = Make(Options(redis_.address(), "back"));
  ASSERT_TRUE(a->WaitShared(Soon(milliseconds(5000))));
  const RateLimit limit{1, 1};
  const MonoTime now = std::chrono::steady_clock::now();
  RateDecision taken = a->Reserve("k", limit, now);
  ASSERT_TRUE(taken.reserved);
  EXPECT_FALSE(a->Reserve("k", limit, now).reserved);
  a->Unreserve("k", limit, taken);
  EXPECT_TRUE(a->Reserve("k", limit, now).reserved);
}

TEST_F(SharedRateLimitsTest, StoppedRedisMeansLocalSharesThenSharedAgain) {
  Counts counts;
  RedisOptions options = Options(redis_.address(), "outage");
  options.timeout = milliseconds(200);
  auto a = Make(options, &counts);
  ASSERT_TRUE(a->WaitShared(Soon(milliseconds(5000))));
  const RateLimit limit{1000, 1000};
  ASSERT_TRUE(a->Reserve("k", limit, Soon(milliseconds(0))).reserved);
  redis_.Stop();
  // No call waits on the dead Redis longer than the bound.
  for (int i = 0; i < 50; ++i) {
    const MonoTime before = std::chrono::steady_clock::now();
    EXPECT_TRUE(a->Reserve("k" + std::to_string(i), limit, before).reserved);
    EXPECT_LT(std::chrono::steady_clock::now() - before, milliseconds(400));
  }
  EXPECT_FALSE(a->shared());
  EXPECT_GE(counts.fallback.load(), 49);
  EXPECT_EQ(counts.downs.load(), 2);  // at start (not yet), and the outage
  // The local share of 1 replica (the one seen) is the whole limit: 1000
  // calls, then refused.
  int through = 0;
  for (int i = 0; i < 1100; ++i) {
    through += a->Reserve("share", limit, Soon(milliseconds(0))).reserved;
  }
  EXPECT_GE(through, 1000);
  EXPECT_LT(through, 1060);
  ASSERT_TRUE(redis_.Start());
  EXPECT_TRUE(a->WaitShared(Soon(milliseconds(3000))));
  const int before = counts.fallback.load();
  EXPECT_TRUE(a->Reserve("k", limit, Soon(milliseconds(0))).reserved);
  EXPECT_EQ(counts.fallback.load(), before);
}

TEST(SharedRateLimitsSlowTest, ASlowRedisKeepsNoCallLongerThanTheBound) {
  const std::string dir = TempDir() + "/slow";
  mkdir(dir.c_str(), 0700);
  RedisServerOptions slow;
  slow.extra_args = {"--enable-debug-command", "local"};
  RedisServer redis(dir, slow);
  ASSERT_TRUE(redis.Start()) << redis.log_path();
  Counts counts;
  RedisOptions options = Options(redis.address(), "slow");
  options.timeout = milliseconds(100);
  auto a = Make(options, &counts);
  ASSERT_TRUE(a->WaitShared(Soon(milliseconds(5000))));
  // Another client puts Redis to sleep for 1.5 s (DEBUG SLEEP).
  auto sleeper = RedisConnection::Create(Options(redis.address(), "slow"));
  ASSERT_TRUE(sleeper.ok());
  ASSERT_TRUE((*sleeper)->Connect(Soon(milliseconds(2000))).ok());
  std::thread sleeping([&] {
    (void)(*sleeper)->Run({{"DEBUG", "SLEEP", "1.5"}},
                          Soon(milliseconds(5000)));
  });
  std::this_thread::sleep_for(milliseconds(100));
  // Quiet keys, each of which needs a round trip: none waits much longer
  // than --redis_timeout, and every one is let through on the share.
  for (int i = 0; i < 20; ++i) {
    const MonoTime before = std::chrono::steady_clock::now();
    EXPECT_TRUE(
        a->Reserve("quiet " + std::to_string(i), {10, 1}, before).reserved);
    EXPECT_LT(std::chrono::steady_clock::now() - before, milliseconds(300));
  }
  EXPECT_FALSE(a->shared());
  EXPECT_EQ(counts.fallback.load(), 20);
  sleeping.join();
  // Awake again: shared within a few probes.
  EXPECT_TRUE(a->WaitShared(Soon(milliseconds(3000))));
}

TEST(SharedRateLimitsNoRedisTest, NeverReachableHoldsTheLimitLocally) {
  Counts counts;
  RedisOptions options =
      Options("127.0.0.1:" + std::to_string(FreeLoopbackPort()), "none");
  options.fallback_replicas = 4;
  auto a = Make(options, &counts);
  // 40/s with a burst of 8 over 4 replicas: 2 at once here.
  const RateLimit limit{40, 8};
  const MonoTime now = std::chrono::steady_clock::now();
  EXPECT_TRUE(a->Reserve("k", limit, now).reserved);
  EXPECT_TRUE(a->Reserve("k", limit, now).reserved);
  RateDecision third = a->Reserve("k", limit, now);
  EXPECT_FALSE(third.reserved);
  // The share's interval: 1 / 10 s.
  EXPECT_GT(third.at, now + milliseconds(50));
  EXPECT_EQ(counts.fallback.load(), 3);
  EXPECT_FALSE(a->shared());
}

TEST(SharedRateLimitsAuthTest, PasswordAndTls) {
  const std::string dir = TempDir() + "/tls";
  mkdir(dir.c_str(), 0700);
  TestCa ca(dir);
  CertFiles server = ca.Issue({"redis", {"localhost"}, {"127.0.0.1"}});
  RedisServer redis(dir, {"s3cret", server.cert, server.key, {}});
  ASSERT_TRUE(redis.Start()) << redis.log_path();
  std::ofstream(dir + "/password") << "s3cret\n";
  std::ofstream(dir + "/wrong") << "guess\n";

  RedisOptions options = Options(redis.address(), "tls");
  options.tls = true;
  options.tls_ca = ca.cert_path();
  options.password_file = dir + "/password";
  auto good = Make(options);
  EXPECT_TRUE(good->WaitShared(Soon(milliseconds(5000))));
  EXPECT_TRUE(good->Reserve("k", {10, 1}, Soon(milliseconds(0))).reserved);

  options.password_file = dir + "/wrong";
  auto refused = Make(options);
  EXPECT_FALSE(refused->WaitShared(Soon(milliseconds(1000))));

  // A certificate from a CA it does not trust: never shared.
  RedisOptions untrusted = Options(redis.address(), "tls");
  untrusted.tls = true;
  untrusted.tls_ca = server.cert;  // not a CA
  untrusted.password_file = dir + "/password";
  auto unverified = Make(untrusted);
  EXPECT_FALSE(unverified->WaitShared(Soon(milliseconds(1000))));
  // Plain text to a TLS port: never shared either.
  options.tls = false;
  options.tls_ca.clear();
  options.password_file = dir + "/password";
  auto plain = Make(options);
  EXPECT_FALSE(plain->WaitShared(Soon(milliseconds(1000))));
}

// A "Redis" that answers each connection with `reply`, then holds it open.
class HostileRedis {
 public:
  explicit HostileRedis(std::string reply) : reply_(std::move(reply)) {
    fd_ = ListenOnLoopback(port_);
    thread_ = std::thread([this] {
      while (!stop_) {
        const int client = accept(fd_, nullptr, nullptr);
        if (client < 0) break;
        size_t sent = 0;
        while (sent < reply_.size() && !stop_) {
          const ssize_t n = send(client, reply_.data() + sent,
                                 reply_.size() - sent, MSG_NOSIGNAL);
          if (n <= 0) break;
          sent += n;
        }
        clients_.push_back(client);
      }
    });
  }
  ~HostileRedis() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
    for (int c : clients_) close(c);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  std::string reply_;
  int port_ = 0;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::vector<int> clients_;
  std::thread thread_;
};

TEST(SharedRateLimitsHostileTest, NonsenseAndEndlessRepliesAreRefused) {
  for (const std::string& reply :
       {std::string("HTTP/1.1 200 OK\r\n\r\n"),
        std::string("$2000000000\r\n") + std::string(3 << 20, 'x'),
        std::string("*2000000000\r\n:1\r\n"), std::string("*3\r\n:1\r\n")}) {
    HostileRedis hostile(reply);
    Counts counts;
    RedisOptions options = Options(hostile.address(), "hostile");
    options.timeout = milliseconds(100);
    auto a = Make(options, &counts);
    EXPECT_FALSE(a->WaitShared(Soon(milliseconds(1500))));
    const MonoTime before = std::chrono::steady_clock::now();
    EXPECT_TRUE(a->Reserve("k", {10, 1}, before).reserved);
    EXPECT_LT(std::chrono::steady_clock::now() - before, milliseconds(200));
    EXPECT_EQ(counts.fallback.load(), 1);
  }
}

TEST(SharedRateLimitsOptionsTest, ErrorsNameTheFlag) {
  RedisOptions options;
  options.address = "redis";
  auto made = SharedRateLimits::Create(options, RealClock::Get());
  EXPECT_THAT(made.status().message(), HasSubstr("--redis: \"redis\""));
  options.address = "[::1:6379";
  made = SharedRateLimits::Create(options, RealClock::Get());
  EXPECT_THAT(made.status().message(), HasSubstr("--redis"));
  options.address = "redis:6379";
  options.user = "egress";
  made = SharedRateLimits::Create(options, RealClock::Get());
  EXPECT_THAT(made.status().message(), HasSubstr("--redis_password_file"));
  options.user.clear();
  options.tls_ca = "/nonexistent/ca.pem";
  made = SharedRateLimits::Create(options, RealClock::Get());
  EXPECT_THAT(made.status().message(), HasSubstr("--redis_tls_ca needs"));
  options.tls = true;
  made = SharedRateLimits::Create(options, RealClock::Get());
  EXPECT_THAT(made.status().message(), HasSubstr("/nonexistent/ca.pem"));
  options.tls = false;
  options.tls_ca.clear();
  options.password_file = "/nonexistent/password";
  made = SharedRateLimits::Create(options, RealClock::Get());
  EXPECT_THAT(made.status().message(), HasSubstr("--redis_password_file"));
  options.password_file.clear();
  options.timeout = std::chrono::nanoseconds(0);
  made = SharedRateLimits::Create(options, RealClock::Get());
  EXPECT_THAT(made.status().message(), HasSubstr("--redis_timeout"));
}

}  // namespace
}  // namespace egress
