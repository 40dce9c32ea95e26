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

namespace egress {
namespace {

using std::chrono::milliseconds;

// egressd from the test's runfiles, as a child process.
class EgressdProcess {
 public:
  explicit EgressdProcess(std::vector<std::string> flags) {
    log_ = absl::StrCat(::testing::TempDir(), "/egressd-", getpid(), ".log");
    std::vector<std::string> args = {
        "service/egressd", "--listen=127.0.0.1:0",
        "--metrics_listen=", "--allow_cidrs=127.0.0.0/8", "--allow_ports=*"};
    args.insert(args.end(), flags.begin(), flags.end());
    pid_ = SpawnChild(args, log_);
    // Bounded wait for the "serving gRPC on port N" line.
    const std::regex serving("serving gRPC on port (\\d+)");
    for (int i = 0; i < 300 && port_ == 0; ++i) {
      std::this_thread::sleep_for(milliseconds(20));
      std::ifstream in(log_);
      std::string text((std::istreambuf_iterator<char>(in)), {});
      std::smatch m;
      if (std::regex_search(text, m, serving)) port_ = std::stoi(m[1]);
    }
  }
  ~EgressdProcess() {
    if (pid_ > 0 && !waited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }
  void Signal(int sig) { kill(pid_, sig); }
  // Exit code, or -1 if it did not exit within `limit`.
  int Wait(std::chrono::seconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        waited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    return -1;
  }
  std::string Log() const {
    std::ifstream in(log_);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
  bool waited_ = false;
};

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
  std::this_thread::sleep_for(milliseconds(200));
  // Draining: new calls are refused.
  absl::StatusOr<Response> late = client.Get(upstream.Url("/echo"));
  EXPECT_FALSE(late.ok());
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
