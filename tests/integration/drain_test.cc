// Graceful drain of the real binary: SIGTERM while 50 slow calls are in flight.
// Every one of them must complete, new calls must be refused, and egressd must
// exit 0 within its drain time.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/egress_client.h"
#include "gtest/gtest.h"
#include "tests/fakes/child_process.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/integration/egressd_process.h"

namespace egress {
namespace {

using std::chrono::milliseconds;

TEST(DrainTest, SigtermDuringFiftySlowCallsLosesNone) {
  FakeUpstream upstream;
  EgressdProcess egressd({"--workers=64", "--drain_timeout=10s"});
  ASSERT_GT(egressd.port(), 0) << egressd.Log();
  EgressClient client(absl::StrCat("127.0.0.1:", egressd.port()));

  std::atomic<int> ok{0};
  std::vector<std::string> errors;
  std::mutex mu;
  std::vector<std::thread> calls;
  for (int i = 0; i < 50; ++i) {
    calls.emplace_back([&] {
      absl::StatusOr<Response> r = client.Get(upstream.Url("/slow/1500"));
      if (r.ok() && r->status == 200) {
        ++ok;
      } else {
        std::lock_guard<std::mutex> lock(mu);
        errors.push_back(std::string(r.status().message()));
      }
    });
  }
  // Bounded wait until all 50 are at the upstream, then SIGTERM.
  for (int i = 0; i < 500 && upstream.requests() < 50; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(upstream.requests(), 50);
  egressd.Signal(SIGTERM);
  // Draining: once egressd has taken the signal, new calls are refused while
  // the 50 are still in flight. A call sent before it took the signal is
  // served; so new calls go out until one is refused (bounded: 10 s).
  int in_flight_at_refusal = -1;
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    absl::StatusOr<Response> late = client.Get(upstream.Url("/echo"));
    if (!late.ok()) {
      in_flight_at_refusal = 50 - ok.load();
      break;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_GT(in_flight_at_refusal, 0)
      << "no new call was refused during the drain";
  for (auto& t : calls) t.join();
  EXPECT_EQ(ok.load(), 50) << (errors.empty() ? "" : errors.front());
  EXPECT_EQ(egressd.Wait(std::chrono::seconds(15)), 0) << egressd.Log();
  const std::string log = egressd.Log();
  EXPECT_NE(log.find("received SIGTERM"), std::string::npos);
  EXPECT_NE(log.find("egressd stopped"), std::string::npos);
}

TEST(DrainTest, CallsLongerThanTheDrainTimeAreAbandonedAndTheProcessExits) {
  FakeUpstream upstream;
  EgressdProcess egressd({"--drain_timeout=1s"});
  ASSERT_GT(egressd.port(), 0) << egressd.Log();
  EgressClient client(absl::StrCat("127.0.0.1:", egressd.port()));
  std::thread slow([&] {
    absl::StatusOr<Response> r = client.Get(upstream.Url("/slow/4000"));
    EXPECT_FALSE(r.ok());  // cut off at the end of the drain, not answered
  });
  for (int i = 0; i < 500 && upstream.requests() < 1; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  const auto start = std::chrono::steady_clock::now();
  egressd.Signal(SIGTERM);
  // Exits 0 soon after the 1 s drain, not after the 4 s upstream.
  EXPECT_EQ(egressd.Wait(std::chrono::seconds(3)), 0) << egressd.Log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  slow.join();
}

}  // namespace
}  // namespace egress
