// DnsCache with a fake resolver and a fake clock: positive and negative TTLs,
// invalidation, the size bound, and IP literals that need no lookup.
#include "service/dns_cache.h"

#include <chrono>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_resolver.h"

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
  EXPECT_EQ(first->address, "10.0.0.1");
  EXPECT_EQ(first->expires, clock_.Now() + seconds(600));
  clock_.Advance(seconds(599));
  resolver_.Set("a.test", "10.0.0.2");
  EXPECT_EQ(cache().Lookup("a.test")->address, "10.0.0.1");
  EXPECT_EQ(resolver_.calls(), 1);
}

TEST_F(DnsCacheTest, NewAnswerTakesEffectWhenTheTtlExpires) {
  ASSERT_TRUE(cache().Lookup("a.test").ok());
  resolver_.Set("a.test", "10.0.0.2");
  clock_.Advance(seconds(601));
  EXPECT_EQ(cache().Lookup("a.test")->address, "10.0.0.2");
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
  EXPECT_EQ(cache().Lookup("nx.test")->address, "10.0.0.9");
  EXPECT_EQ(resolver_.calls(), 2);
}

TEST_F(DnsCacheTest, InvalidateForcesAFreshLookup) {
  ASSERT_TRUE(cache().Lookup("a.test").ok());
  resolver_.Set("a.test", "10.0.0.2");
  cache().Invalidate("a.test");
  EXPECT_EQ(cache().Lookup("a.test")->address, "10.0.0.2");
}

TEST_F(DnsCacheTest, IpLiteralsNeedNoLookup) {
  EXPECT_EQ(cache().Lookup("127.0.0.1")->address, "127.0.0.1");
  EXPECT_EQ(cache().Lookup("::1")->address, "::1");
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
  auto address = resolver.Resolve("localhost");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_TRUE(*address == "127.0.0.1" || *address == "::1") << *address;
}

}  // namespace
}  // namespace egress
