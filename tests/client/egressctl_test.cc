// egressctl, the binary, run as a user would: output, exit codes and errors.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/integration/egress_harness.h"

namespace egress {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct CtlRun {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

class EgressctlTest : public ::testing::Test {
 protected:
  void SetUp() override { egress_.Start(); }

  // Runs client/egressctl (from the test's runfiles) with `args`.
  CtlRun Egressctl(const std::string& args) {
    const std::string err_file = absl::StrCat(::testing::TempDir(), "/stderr");
    const std::string command = absl::StrCat(
        "client/egressctl --server=127.0.0.1:", egress_.server().grpc_port(),
        " ", args, " 2>", err_file);
    CtlRun run;
    FILE* pipe = popen(command.c_str(), "r");
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0)
      run.out.append(buffer, n);
    const int status = pclose(pipe);
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream err(err_file);
    run.err.assign(std::istreambuf_iterator<char>(err), {});
    return run;
  }

  FakeUpstream upstream_;
  EgressHarness egress_;
};

TEST_F(EgressctlTest, PrintsTheBodyAndWithIncludeTheHead) {
  CtlRun run = Egressctl(upstream_.Url("/status/404"));
  EXPECT_EQ(run.exit_code, 0);  // an HTTP error is still an answer
  EXPECT_EQ(run.out, "status 404");
  run = Egressctl("-i " + upstream_.Url("/repeat"));
  EXPECT_THAT(run.out, StartsWith("HTTP/1.1 200\r\n"));
  EXPECT_THAT(
      run.out,
      HasSubstr("Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nSet-Cookie: c=3"));
  EXPECT_THAT(run.out, HasSubstr("\r\n\r\nok"));
}

TEST_F(EgressctlTest, SendsMethodHeadersAndBinaryData) {
  const std::string file = absl::StrCat(::testing::TempDir(), "/body.bin");
  const std::string bytes("\0\x01\xff binary\n", 10);
  std::ofstream(file, std::ios::binary) << bytes;
  CtlRun run = Egressctl(absl::StrCat("-X PUT -H 'X-A: 1' --data-binary @",
                                      file, " ", upstream_.Url("/echo")));
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, bytes);
  run = Egressctl("-d hello -i " + upstream_.Url("/echo"));
  EXPECT_THAT(run.out, HasSubstr("X-Method: POST"));  // -d implies POST
}

TEST_F(EgressctlTest, StreamsAndPrintsJson) {
  CtlRun run = Egressctl("--stream " + upstream_.Url("/sse/3/10"));
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "data: 0\n\ndata: 1\n\ndata: 2\n\n");
  run = Egressctl("--json " + upstream_.Url("/echo"));
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("\"status\": 200"));
  EXPECT_THAT(run.out, HasSubstr("\"timing\""));
  EXPECT_THAT(run.out, HasSubstr("\"attempts\": 1"));
}

TEST_F(EgressctlTest, FailedCallsExitOneWithCodeAndMessage) {
  CtlRun run = Egressctl("http://10.0.0.1/");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err,
              StartsWith("egressctl: PERMISSION_DENIED: connect to 10.0.0.1"));
  run = Egressctl("--timeout 200ms " + upstream_.Url("/slow/1500"));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, StartsWith("egressctl: DEADLINE_EXCEEDED:"));
}

// curl's -o, -s, -S and -f, which newcomers type out of habit; -L is refused
// with a message that says why.
TEST_F(EgressctlTest, CurlsOutputSilentAndFailOptionsMeanWhatTheyMeanToCurl) {
  const std::string file = absl::StrCat(::testing::TempDir(), "/out.bin");
  CtlRun run = Egressctl(
      absl::StrCat("-o ", file, " -w '%{http_code}' ", upstream_.Url("/echo")));
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "200");  // -w to stdout, the body to the file
  std::ifstream in(file, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "");

  run = Egressctl("-f " + upstream_.Url("/status/404"));
  EXPECT_EQ(run.exit_code, 22);
  EXPECT_EQ(run.out, "");
  EXPECT_THAT(run.err, HasSubstr("answered 404"));
  run = Egressctl("-sf --stream " + upstream_.Url("/status/503"));
  EXPECT_EQ(run.exit_code, 22);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "");
  run = Egressctl(
      absl::StrCat("-fsSo ", file, " ", upstream_.Url("/status/200")));
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "");

  // -s hides a failed call's message, -S shows it again; the code stays.
  run = Egressctl("-s http://127.0.0.1:25/");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err, "");
  run = Egressctl("-sS http://127.0.0.1:25/");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("UNAVAILABLE"));

  run = Egressctl("-L " + upstream_.Url("/echo"));
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("does not follow them"));
}

TEST_F(EgressctlTest, BadUsageExitsTwo) {
  EXPECT_EQ(Egressctl("").exit_code, 2);
  CtlRun run = Egressctl("--bogus http://x/");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("unknown option --bogus"));
  EXPECT_EQ(Egressctl("--timeout soon http://x/").exit_code, 2);
  run = Egressctl("--help");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.out, HasSubstr("usage: egressctl"));
}

// -w prints the timing phases after the body; an error prints its reason,
// and with --json its google.rpc.Status.
TEST_F(EgressctlTest, WriteOutShowsPhasesAndErrorsShowTheirReason) {
  CtlRun run = Egressctl(
      "-w '\\n%{http_code} %{remote_ip}:%{remote_port} reused=%{reused} "
      "dns=%{time_dns} connect=%{time_connect} tls=%{time_tls} "
      "first_byte=%{time_first_byte} size=%{size_download} %{bogus}\\n' " +
      upstream_.Url("/status/201"));
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out,
              ::testing::MatchesRegex(
                  "status 201\n201 127\\.0\\.0\\.1:[0-9]+ reused=0 "
                  "dns=0\\.[0-9]{6} connect=0\\.[0-9]{6} tls=0\\.000000 "
                  "first_byte=0\\.[0-9]{6} size=10 %\\{bogus\\}\n"));
  EXPECT_THAT(run.out, ::testing::Not(HasSubstr("connect=0.000000")));

  const std::string dead =
      absl::StrCat("http://127.0.0.1:", UnusedLoopbackPort(), "/");
  run = Egressctl("-w '%{grpc_code} %{reason}' " + dead);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.out, "UNAVAILABLE CONNECT_REFUSED");
  EXPECT_THAT(run.err, HasSubstr("egressctl: reason CONNECT_REFUSED "
                                 "address=127.0.0.1 origin=http://127.0.0.1:"));

  // --retry: egressd retries an answer that asks for it.
  run = Egressctl("--retry 3 -w ' %{http_code} %{attempts}' " +
                  upstream_.Url("/busy/ctl/2/0"));
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "ok after 2 200 3");
  EXPECT_EQ(Egressctl("--retry 11 " + dead).exit_code, 2);

  run = Egressctl("--json " + dead);
  EXPECT_EQ(run.exit_code, 1);
  std::printf("egressctl --json %s:\n%s\n", dead.c_str(), run.out.c_str());
  EXPECT_THAT(run.out, HasSubstr("\"code\": 14"));
  EXPECT_THAT(
      run.out,
      HasSubstr("\"@type\": \"type.googleapis.com/google.rpc.ErrorInfo\""));
  EXPECT_THAT(run.out, HasSubstr("\"reason\": \"CONNECT_REFUSED\""));
  EXPECT_THAT(run.out, HasSubstr("\"domain\": \"egress.local\""));
}

}  // namespace
}  // namespace egress
