// The memory budget holds in the real process: egressd's resident memory is
// measured in /proc while 200 callers each upload about 1 MiB at once, through
// an egressd with a 64 MiB --max_buffered_bytes and, in the same test, one with
// no budget. The load is made deterministic: the upstream holds every request
// at its gate until no call is left that could still arrive (each one is
// waiting there or already refused), so every admitted body is in flight at
// the peak in both runs, however the 2 cores schedule the callers. With the
// budget every call is answered whole or refused naming it, and afterwards
// every byte of the budget is free again.
//
// Resident memory is a statistical figure (allocator caches, gRPC's buffers):
// the bounds below follow from measured figures given next to them.
#include <atomic>
#include <chrono>
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
#include "tests/fakes/wait_until.h"
#include "tests/integration/egressd_process.h"

namespace egress {
namespace {

constexpr long kBudgetMib = 64;
constexpr int kCallers = 200;
// 1,000 KiB, not 1 MiB: 65 uploads fit the 64 MiB budget with 536 KiB to
// spare, so the admitted calls' short answers always fit as well and exactly
// 65 calls are admitted, whatever their order.
constexpr size_t kUploadBytes = 1000 * 1024;
constexpr int kAdmittedUnderBudget = (kBudgetMib << 20) / kUploadBytes;

// Under AddressSanitizer freed memory waits in a quarantine (256 MiB) and
// every allocation has shadow and redzones: resident memory says nothing about
// the budget there, so the bounds are checked in the plain build only.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kResidentMemoryMeansSomething = false;
#else
constexpr bool kResidentMemoryMeansSomething = true;
#endif

struct Load {
  int ok = 0;
  int refused = 0;  // RESOURCE_EXHAUSTED naming --max_buffered_bytes
  std::vector<std::string> other;
  int held_at_gate = 0;  // calls waiting at the upstream at the peak
  bool gate_filled = false;
  long growth_mib = 0;  // peak resident memory over the warm baseline
  // Afterwards, a 60 MB download: with a 64 MiB budget it only fits when
  // every byte the calls held came back.
  absl::Status afterwards;
};

// kCallers callers at once, each uploading kUploadBytes to the upstream's
// gate, through an egressd with `budget_flag` and no per-origin limit (which
// would hold calls back before the upstream).
Load RunLoad(FakeUpstream& upstream, const std::string& budget_flag) {
  Load load;
  EgressdProcess egressd({budget_flag, "--max_inflight_per_origin=0"});
  EXPECT_GT(egressd.port(), 0) << egressd.Log();
  if (egressd.port() == 0) return load;
  EgressClient client(absl::StrCat("127.0.0.1:", egressd.port()));
  // Warm: a few calls start the channel, a worker and its session.
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(
        client.Post(upstream.Url("/echo"), std::string(1 << 20, 'w')).ok());
  }
  const long base_kib = egressd.StatusKib("VmRSS");
  upstream.CloseGate();
  std::atomic<int> ok{0}, refused{0}, returned{0};
  std::mutex mu;
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&] {
      absl::StatusOr<Response> r =
          client.Post(upstream.Url("/gate"), std::string(kUploadBytes, 'y'));
      if (r.ok() && r->status == 200 &&
          r->body == std::to_string(kUploadBytes)) {
        ++ok;
      } else if (absl::IsResourceExhausted(r.status()) &&
                 absl::StrContains(r.status().message(),
                                   "--max_buffered_bytes")) {
        ++refused;
      } else {
        std::lock_guard<std::mutex> lock(mu);
        load.other.push_back(r.ok() ? absl::StrCat("status ", r->status)
                                    : r.status().ToString());
      }
      ++returned;
    });
  }
  // Every call is either at the gate or back with its answer: nothing more
  // can arrive, and every admitted body is held at once. Bounded: 60 s.
  load.gate_filled = WaitUntil(
      [&] { return upstream.gate_waiting() + returned.load() == kCallers; },
      std::chrono::seconds(60));
  load.held_at_gate = upstream.gate_waiting();
  upstream.OpenGate();
  for (auto& t : callers) t.join();
  load.ok = ok.load();
  load.refused = refused.load();
  load.growth_mib = (egressd.StatusKib("VmHWM") - base_kib) / 1024;
  absl::StatusOr<Response> big = client.Get(upstream.Url("/bytes/60000000"));
  load.afterwards = big.status();
  std::printf(
      "%d x %zu KiB up at once, %s: %d held at the upstream at the peak, %d "
      "OK, %d refused naming the budget; egressd's RSS grew by %ld MiB at "
      "its peak\n",
      kCallers, kUploadBytes / 1024, budget_flag.c_str(), load.held_at_gate,
      load.ok, load.refused, load.growth_mib);
  return load;
}

TEST(MemoryRssTest, StatisticalPeakOfTwoHundredUploadsStaysNearTheBudget) {
  // In this process: egressd's RSS is egressd's own. One thread per call
  // held at the gate, and a few for the warm-up.
  FakeUpstream upstream(kCallers + 16);
  const Load budgeted = RunLoad(
      upstream, absl::StrCat("--max_buffered_bytes=", kBudgetMib << 20));
  const Load unlimited = RunLoad(upstream, "--max_buffered_bytes=0");

  // Exact, whatever the timing: the budget admits what fits and refuses the
  // rest at once, and the admitted calls all complete.
  EXPECT_TRUE(budgeted.gate_filled);
  EXPECT_TRUE(budgeted.other.empty()) << budgeted.other.front();
  EXPECT_EQ(budgeted.held_at_gate, kAdmittedUnderBudget);
  EXPECT_EQ(budgeted.ok, kAdmittedUnderBudget);
  EXPECT_EQ(budgeted.refused, kCallers - kAdmittedUnderBudget);
  EXPECT_TRUE(budgeted.afterwards.ok()) << budgeted.afterwards;
  EXPECT_TRUE(unlimited.gate_filled);
  EXPECT_TRUE(unlimited.other.empty()) << unlimited.other.front();
  EXPECT_EQ(unlimited.held_at_gate, kCallers);
  EXPECT_EQ(unlimited.ok, kCallers);
  if (kResidentMemoryMeansSomething) {
    // Statistical. Without a budget egressd holds all 200 bodies at once:
    // +237..251 MiB in 13 runs. With it, what egressd holds past
    // admission is the budget; before admission gRPC has already received
    // each caller's request, which the budget cannot cap (a refused call
    // frees it at once): +101..128 MiB in the same runs (2 cores, a CPU hog
    // beside them). The bound, twice the budget plus 64 MiB for gRPC's
    // receive buffers and the allocator's caches, is 64 MiB above the
    // largest figure measured; the unbudgeted peak is 109 MiB above its own.
    EXPECT_LT(budgeted.growth_mib, 2 * kBudgetMib + 64);
    EXPECT_GT(unlimited.growth_mib, 2 * kBudgetMib);  // the load is over it
  }
}

}  // namespace
}  // namespace egress
