// A few seconds of each benchmark tool, so they cannot rot: egress_bench
// against an in-process egressd (closed and open loop, Do and DoStream, and
// the health check), bench/http_floor against a loopback upstream, and the
// micro-benchmarks with a tiny minimum time. Measures nothing; checks that
// the tools run and report.
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/integration/egress_harness.h"

namespace egress {
namespace {

using ::testing::HasSubstr;

std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0)
    out.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(BenchSmokeTest, EgressBenchRunsClosedAndOpenLoop) {
  FakeUpstream upstream;
  EgressHarness egress;
  egress.Start([](Config& c) { c.service.access_log = false; });
  const std::string base = absl::StrCat(
      "bench/egress_bench --server=127.0.0.1:", egress.server().grpc_port(),
      " --url=", upstream.Url("/echo"), " --json --duration=1s");
  for (const std::string& mode :
       {std::string("--concurrency=4"),
        std::string("--concurrency=2 --rps=200"),
        std::string("--concurrency=2 --stream --requests=50"),
        std::string("--concurrency=2 --health")}) {
    auto [code, out] =
        RunCommand(absl::StrCat(base, " ", mode, " --pid=", getpid()));
    EXPECT_EQ(code, 0) << mode << ": " << out;
    EXPECT_THAT(out, HasSubstr("\"throughput\": ")) << mode;
    EXPECT_THAT(out, HasSubstr("\"codes\": {\"OK\": ")) << mode;
    EXPECT_THAT(out, HasSubstr("\"p99\": ")) << mode;
  }
}

TEST(BenchSmokeTest, HttpFloorRuns) {
  FakeUpstream upstream;
  auto [code, out] = RunCommand(absl::StrCat(
      "bench/http_floor --url=", upstream.Url("/echo"), " --duration=1"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("\"failed\":0,"));
  EXPECT_THAT(out, HasSubstr("\"cpu_per_call_us\":"));
  EXPECT_THAT(out, HasSubstr("\"p50\":"));
}

TEST(BenchSmokeTest, MicroBenchmarksRun) {
  auto [code, out] = RunCommand(
      "bench/micro_bench --benchmark_min_time=0.01 --benchmark_format=json");
  EXPECT_EQ(code, 0) << out;
  for (const char* name : {"BM_SessionCacheHit", "BM_ValidateRequest",
                           "BM_RecordCall", "BM_ResponseConversion"}) {
    EXPECT_THAT(out, HasSubstr(name));
  }
}

}  // namespace
}  // namespace egress
