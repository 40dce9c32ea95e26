// DnsCache with a fake resolver and a fake clock: positive and negative TTLs,
// invalidation, the size bound, and IP literals that need no lookup.
#include "service/transport/dns_cache.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_resolver.h"
#include "tests/fakes/wait_until.h"

namespace egress {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;

class DnsCacheTest : public ::testing::Test {
 protected:
  DnsCacheTest() {
    options_.ttl = seconds(600);
    options_.negative_ttl = seconds(5);
    options_.max_entries = 3;
    resolver_.Set("a.test", "10.0.0.1");
  }
  DnsCache& cache() {
    if (!cache_)
      cache_ = std::make_unique<DnsCache>(resolver_, clock_, options_);
    return *cache_;
  }

  FakeResolver resolver_;
  FakeClock clock_;
  DnsCacheOptions options_;
  std::unique_ptr<DnsCache> cache_;
};

TEST_F(DnsCacheTest, CachesAnAnswerForTheTtl) {
  auto first = cache().Lookup("a.test");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->addresses[0], "10.0.0.1");
  EXPECT_EQ(first->expires, clock_.Now() + seconds(600));
  clock_.Advance(seconds(599));
  resolver_.Set("a.test", "10.0.0.2");
  EXPECT_EQ(cache().Lookup("a.test")->addresses[0], "10.0.0.1");
  EXPECT_EQ(resolver_.calls(), 1);
}

TEST_F(DnsCacheTest, NewAnswerTakesEffectWhenTheTtlExpires) {
  ASSERT_TRUE(cache().Lookup("a.test").ok());
  resolver_.Set("a.test", "10.0.0.2");
  clock_.Advance(seconds(601));
  EXPECT_EQ(cache().Lookup("a.test")->addresses[0], "10.0.0.2");
  EXPECT_EQ(resolver_.calls(), 2);
}

TEST_F(DnsCacheTest, FailureIsUnavailableNamingTheHostAndCachedBriefly) {
  auto missing = cache().Lookup("nx.test");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("\"nx.test\""));
  // Within the negative TTL the resolver is not asked again.
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(cache().Lookup("nx.test").ok());
  EXPECT_EQ(resolver_.calls(), 1);
  resolver_.Set("nx.test", "10.0.0.9");
  clock_.Advance(seconds(6));
  EXPECT_EQ(cache().Lookup("nx.test")->addresses[0], "10.0.0.9");
  EXPECT_EQ(resolver_.calls(), 2);
}

TEST_F(DnsCacheTest, InvalidateForcesAFreshLookup) {
  ASSERT_TRUE(cache().Lookup("a.test").ok());
  resolver_.Set("a.test", "10.0.0.2");
  cache().Invalidate("a.test");
  EXPECT_EQ(cache().Lookup("a.test")->addresses[0], "10.0.0.2");
}

TEST_F(DnsCacheTest, IpLiteralsNeedNoLookup) {
  EXPECT_EQ(cache().Lookup("127.0.0.1")->addresses[0], "127.0.0.1");
  EXPECT_EQ(cache().Lookup("::1")->addresses[0], "::1");
  EXPECT_EQ(resolver_.calls(), 0);
  EXPECT_EQ(cache().size(), 0u);
}

TEST_F(DnsCacheTest, StaysWithinItsBound) {
  for (int i = 0; i < 10; ++i) {
    std::string host = "h" + std::to_string(i) + ".test";
    resolver_.Set(host, "10.1.0." + std::to_string(i));
    clock_.Advance(seconds(1));
    ASSERT_TRUE(cache().Lookup(host).ok());
    EXPECT_LE(cache().size(), 3u);
  }
  // The newest entries survive; the oldest (soonest to expire) went first.
  const int before = resolver_.calls();
  ASSERT_TRUE(cache().Lookup("h9.test").ok());
  EXPECT_EQ(resolver_.calls(), before);
}

TEST(SystemResolverTest, ResolvesLocalhostFromEtcHosts) {
  SystemResolver resolver;
  auto addresses = resolver.Resolve("localhost");
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  // Every address /etc/hosts gives, each once: 127.0.0.1, and ::1 where the
  // file lists it (as a Debian install writes it).
  EXPECT_THAT(*addresses, ::testing::Contains("127.0.0.1"));
  for (const std::string& a : *addresses) {
    EXPECT_TRUE(a == "127.0.0.1" || a == "::1") << a;
  }
}

TEST_F(DnsCacheTest, SlowLookupEndsAtTheDeadlineAndStillFillsTheCache) {
  resolver_.Hold();  // the name server does not answer
  const auto start = std::chrono::steady_clock::now();
  auto slow = cache().Lookup(
      "a.test", Deadline::In(clock_, std::chrono::milliseconds(100)));
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(absl::IsDeadlineExceeded(slow.status())) << slow.status();
  EXPECT_THAT(slow.status().message(), HasSubstr("a.test"));
  EXPECT_GE(waited, std::chrono::milliseconds(90));
  EXPECT_LT(waited, std::chrono::seconds(2));
  resolver_.Release();
  // The lookup went on in the background; the next caller gets its answer.
  auto later = cache().Lookup("a.test");
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->addresses[0], "10.0.0.1");
  EXPECT_EQ(resolver_.calls(), 1);
}

TEST_F(DnsCacheTest, CallersOfTheSameNameShareOneLookup) {
  DnsCache& dns = cache();
  resolver_.Hold();
  std::vector<std::thread> callers;
  std::atomic<int> answered{0};
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&] {
      if (dns.Lookup("a.test").ok()) ++answered;
    });
  }
  // Every caller waits for the one lookup before it is answered.
  ASSERT_TRUE(WaitUntil([&] { return dns.Waiting("a.test") == 8; },
                        std::chrono::seconds(10)));
  resolver_.Release();
  for (auto& t : callers) t.join();
  EXPECT_EQ(answered.load(), 8);
  EXPECT_EQ(resolver_.calls(), 1);
}

TEST_F(DnsCacheTest, TooManyLookupsInFlightAreRefused) {
  options_.max_inflight = 2;
  DnsCache& dns = cache();
  resolver_.Hold();
  std::vector<std::thread> callers;
  for (const char* host : {"x.test", "y.test"}) {
    callers.emplace_back([&dns, host] { (void)dns.Lookup(host); });
  }
  while (resolver_.calls() < 2)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto third = cache().Lookup("z.test");
  EXPECT_TRUE(absl::IsUnavailable(third.status())) << third.status();
  EXPECT_THAT(third.status().message(),
              HasSubstr("2 lookups already in flight"));
  resolver_.Release();
  for (auto& t : callers) t.join();
}

}  // namespace
}  // namespace egress
