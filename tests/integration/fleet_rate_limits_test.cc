// Rate limits held across a fleet: Debian's redis-server and three egressd
// processes sharing it (--redis), a loopback upstream that counts what
// reaches it, and callers offering three times the limit spread over the
// three. The upstream sees the limit (100/s, ±10% over 10 s); redis-server
// stopped mid-run, every egressd keeps serving under its share (1/3, the
// replicas it last saw), counts the fallback and warns; started again, the
// limit is shared again within seconds. A caller's limit holds across the
// fleet while another caller, under his, is not touched.
//
// scripts/setup.sh --tests installs redis-server.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/egress_client.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/redis_server.h"
#include "tests/integration/egressd_process.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Steady = std::chrono::steady_clock;

constexpr char kAlice[] = "token-alice-0123456789";
constexpr char kBob[] = "token-bob-0123456789";

// Callers offering `per_second` calls in all, spread evenly over `fleet`
// (two paced threads per egressd), until Stop(); each call counted by its
// outcome.
class Offer {
 public:
  Offer(const std::vector<std::unique_ptr<EgressdProcess>>& fleet,
        const std::string& token, const std::string& url, double per_second) {
    const int threads = static_cast<int>(fleet.size()) * 2;
    const double each = per_second / threads;
    for (int t = 0; t < threads; ++t) {
      ClientOptions options;
      options.bearer_token = token;
      options.default_deadline = seconds(5);
      auto client = std::make_shared<EgressClient>(
          absl::StrCat("127.0.0.1:", fleet[t / 2]->port()), options);
      threads_.emplace_back([this, client, url, each] {
        const Steady::time_point start = Steady::now();
        // Bounded: at most 10 minutes' worth of calls, whatever happens.
        for (int i = 0; i < each * 600 && !stop_.load(); ++i) {
          std::this_thread::sleep_until(
              start + std::chrono::duration_cast<Steady::duration>(
                          std::chrono::duration<double>(i / each)));
          if (stop_.load()) break;
          absl::StatusOr<Response> r = client->Get(url);
          if (r.ok() && r->status == 200) {
            ++ok_;
          } else if (!r.ok() && absl::IsResourceExhausted(r.status()) &&
                     ErrorDetailsOf(r.status()).reason == "RATE_LIMITED") {
            ++limited_;
          } else {
            ++other_;
          }
        }
      });
    }
  }
  ~Offer() { Stop(); }
  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int ok() const { return ok_.load(); }
  int limited() const { return limited_.load(); }
  int other() const { return other_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, limited_{0}, other_{0};
  std::vector<std::thread> threads_;
};

class FleetRateLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir();
    ASSERT_TRUE(redis_.Start()) << redis_.log_path();
    std::ofstream(dir_ + "/tokens") << kAlice << " alice\n" << kBob << " bob\n";
  }

  // Three egressd sharing redis_ under `config`, with `flags`.
  void StartFleet(const std::string& config,
                  const std::vector<std::string>& flags = {}) {
    fleet_.clear();
    const std::string path = absl::StrCat(dir_, "/fleet-", ++configs_, ".conf");
    std::ofstream(path) << config;
    for (int i = 0; i < 3; ++i) {
      std::vector<std::string> all = {
          "--config=" + path, "--metrics_listen=127.0.0.1:0",
          "--auth_tokens_file=" + dir_ + "/tokens",
          "--redis=" + redis_.address(),
          absl::StrCat("--redis_key_prefix=fleet", configs_),
          // Sanitizer builds on 2 busy cores: a slow answer is not an outage.
          "--redis_timeout=500ms"};
      all.insert(all.end(), flags.begin(), flags.end());
      fleet_.push_back(std::make_unique<EgressdProcess>(all));
      ASSERT_GT(fleet_.back()->port(), 0) << fleet_.back()->Log();
    }
  }

  double Sum(const std::string& series) const {
    double sum = 0;
    for (const auto& egressd : fleet_) {
      sum += EgressdProcess::Series(egressd->Metrics(), series);
    }
    return sum;
  }

  // Waits (at most `limit`) until every egressd shares the limits through
  // redis and counts all three replicas.
  bool WaitAllShared(milliseconds limit) const {
    const Steady::time_point end = Steady::now() + limit;
    while (Steady::now() < end) {
      if (Sum("egress_ratelimit_redis_up") == 3 &&
          Sum("egress_ratelimit_replicas") == 9) {
        return true;
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    return false;
  }

  std::string dir_;
  RedisServer redis_{::testing::TempDir()};
  FakeUpstream upstream_;
  std::vector<std::unique_ptr<EgressdProcess>> fleet_;
  int configs_ = 0;
};

TEST_F(FleetRateLimitsTest, OriginLimitHoldsAcrossTheFleetAndOutlivesRedis) {
  StartFleet(
      absl::StrCat("origins { match: \"http://127.0.0.1:", upstream_.port(),
                   "\" rate_limit { rate: \"100/s\" burst: 10 } }\n"));
  ASSERT_TRUE(WaitAllShared(milliseconds(10000)))
      << fleet_[0]->Log() << fleet_[0]->Metrics();

  // 300/s offered over the three for 10 s: the upstream sees 100/s.
  Offer offer(fleet_, kBob, upstream_.Url("/echo"), 300);
  const int before = upstream_.requests();
  std::this_thread::sleep_for(seconds(10));
  const int shared = upstream_.requests() - before;
  EXPECT_GE(shared, 900) << "over 10 s";
  EXPECT_LE(shared, 1100) << "over 10 s";
  EXPECT_EQ(Sum("egress_ratelimit_fallback_total"), 0);

  // redis-server stops: each egressd holds 1/3 of the limit on its own.
  const int ok_before_outage = offer.ok();
  redis_.Stop();
  std::this_thread::sleep_for(milliseconds(1000));
  const int outage_start = upstream_.requests();
  std::this_thread::sleep_for(seconds(3));
  const int outage = upstream_.requests() - outage_start;
  EXPECT_GE(outage, 240) << "3 s on local shares";
  EXPECT_LE(outage, 360) << "3 s on local shares";
  EXPECT_GT(offer.ok(), ok_before_outage + 240);
  for (const auto& egressd : fleet_) {
    const std::string metrics = egressd->Metrics();
    EXPECT_GT(
        EgressdProcess::Series(metrics, "egress_ratelimit_fallback_total"), 100)
        << metrics;
    EXPECT_EQ(EgressdProcess::Series(metrics, "egress_ratelimit_redis_up"), 0);
    EXPECT_TRUE(absl::StrContains(egressd->Log(), "the replicas last seen"))
        << egressd->Log();
  }

  // Started again: shared within a few seconds, and the limit holds.
  ASSERT_TRUE(redis_.Start()) << redis_.log_path();
  const Steady::time_point restarted = Steady::now();
  ASSERT_TRUE(WaitAllShared(milliseconds(5000)));
  const double back_in =
      std::chrono::duration<double>(Steady::now() - restarted).count();
  EXPECT_LT(back_in, 3.0);
  const double fallback_after = Sum("egress_ratelimit_fallback_total");
  const int shared_again_start = upstream_.requests();
  std::this_thread::sleep_for(seconds(3));
  const int shared_again = upstream_.requests() - shared_again_start;
  offer.Stop();
  EXPECT_GE(shared_again, 270) << "3 s shared again";
  EXPECT_LE(shared_again, 340) << "3 s shared again";
  EXPECT_EQ(Sum("egress_ratelimit_fallback_total"), fallback_after);
  EXPECT_EQ(offer.other(), 0);
  // Every refusal is counted, per origin, on the fleet.
  EXPECT_EQ(Sum(absl::StrCat("egress_rate_limited_total{limit=\"origin\","
                             "origin=\"http://127.0.0.1:",
                             upstream_.port(), "\",outcome=\"refused\"}")),
            offer.limited());
  std::cout << "upstream saw " << shared << " calls in 10 s shared, " << outage
            << " in 3 s on local shares, " << shared_again
            << " in 3 s shared again (" << back_in << " s after redis came "
            << "back)\n";
}

TEST_F(FleetRateLimitsTest, CallersLimitHoldsAcrossTheFleetOthersUntouched) {
  StartFleet("", {"--rate_limit_per_caller=20/s"});
  ASSERT_TRUE(WaitAllShared(milliseconds(10000))) << fleet_[0]->Log();
  // alice offers 60/s and bob 15/s, both spread over the three, for 3 s.
  Offer alice(fleet_, kAlice, upstream_.Url("/echo"), 60);
  Offer bob(fleet_, kBob, upstream_.Url("/echo"), 15);
  std::this_thread::sleep_for(seconds(3));
  alice.Stop();
  bob.Stop();
  // alice: her burst (20) and 20/s, across the fleet.
  EXPECT_GE(alice.ok(), 20 + 40);
  EXPECT_LE(alice.ok(), 20 + 66);
  EXPECT_GT(alice.limited(), 60);
  // bob: every call.
  EXPECT_EQ(bob.limited(), 0);
  EXPECT_GE(bob.ok(), 40);
  EXPECT_EQ(alice.other() + bob.other(), 0);
}

}  // namespace
}  // namespace egress
