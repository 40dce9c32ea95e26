// The memory budget holds in the real process: egressd's resident memory is
// measured in /proc while 200 callers each upload 1 MiB and get 1 MiB back at
// once, through a --max_buffered_bytes smaller than their sum. Every call is
// answered whole or refused naming the budget, and the peak is printed and
// bounded (see the bound's comment for what the budget does not cap).
#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/egress_client.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/integration/egressd_process.h"

namespace egress {
namespace {

constexpr long kBudgetMib = 64;

TEST(MemoryRssTest, TwoHundredMiBUploadsAndDownloadsStayNearTheBudget) {
  FakeUpstream upstream;  // in this process: egressd's RSS is egressd's own
  EgressdProcess egressd(
      {absl::StrCat("--max_buffered_bytes=", kBudgetMib << 20)});
  ASSERT_GT(egressd.port(), 0) << egressd.Log();
  EgressClient client(absl::StrCat("127.0.0.1:", egressd.port()));
  // Warm: a few calls start the channel, a worker and its session.
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        client.Post(upstream.Url("/echo"), std::string(1 << 20, 'w')).ok());
  }
  const long base_kib = egressd.StatusKib("VmRSS");
  ASSERT_GT(base_kib, 0);

  std::atomic<int> ok{0}, refused{0};
  std::mutex mu;
  std::vector<std::string> other;
  std::vector<std::thread> callers;
  for (int i = 0; i < 200; ++i) {
    callers.emplace_back([&] {
      absl::StatusOr<Response> r =
          client.Post(upstream.Url("/echo"), std::string(1 << 20, 'y'));
      if (r.ok() && r->status == 200 && r->body.size() == (1u << 20)) {
        ++ok;
      } else if (absl::IsResourceExhausted(r.status()) &&
                 absl::StrContains(r.status().message(),
                                   "--max_buffered_bytes")) {
        ++refused;
      } else {
        std::lock_guard<std::mutex> lock(mu);
        other.push_back(r.ok() ? absl::StrCat("status ", r->status)
                               : r.status().ToString());
      }
    });
  }
  for (auto& t : callers) t.join();
  const long peak_kib = egressd.StatusKib("VmHWM");
  const long growth_mib = (peak_kib - base_kib) / 1024;
  std::printf(
      "200 x 1 MiB up and 1 MiB down, --max_buffered_bytes=%ld MiB: %d OK, "
      "%d refused naming the budget; egressd RSS %ld MiB before, peak %ld "
      "MiB (+%ld MiB)\n",
      kBudgetMib, ok.load(), refused.load(), base_kib / 1024, peak_kib / 1024,
      growth_mib);
  EXPECT_TRUE(other.empty()) << other.front();
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(ok.load() + refused.load(), 200);
  // What egressd holds past admission is the budget, about twice over (a
  // body's gRPC message and the response being assembled). Before admission
  // gRPC has already received each caller's 1 MiB request, and holds it while
  // the call waits for the budget: the budget does not cap that (measured:
  // +131..215 MiB with a 64 MiB budget, +159..223 MiB with none), so the bound
  // allows the 200 requests too.
  EXPECT_LT(growth_mib, 200 + 2 * kBudgetMib + 64);
}

}  // namespace
}  // namespace egress
