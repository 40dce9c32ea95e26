// egressd started with a bad flag, file, certificate or key: every one must
// end in a clean exit (2, or absl's own 1 for a value it cannot parse) with one
// line naming the flag and the problem, never a signal and never a server that
// starts anyway. Runs the real binary from the test's runfiles.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/child_process.h"
#include "tests/fakes/test_certs.h"

namespace egress {
namespace {

using ::testing::HasSubstr;

struct Case {
  std::string name;
  std::vector<std::string> flags;
  int exit_code;
  std::vector<std::string> words;  // all must appear in the output
};

class StartupTest : public ::testing::Test {
 protected:
  StartupTest() : dir_(::testing::TempDir()), ca_(dir_) {}

  // Runs egressd with `flags` (on loopback, ephemeral ports); its exit status
  // as waitpid gives it, and its output.
  int Run(const std::vector<std::string>& flags, std::string& output) {
    const std::string log = absl::StrCat(dir_, "/startup-", runs_++, ".log");
    std::vector<std::string> argv = {"service/egressd", "--listen=127.0.0.1:0",
                                     "--metrics_listen=127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const pid_t pid = SpawnChild(argv, log, /*stdout_too=*/true);
    EXPECT_GT(pid, 0);
    int status = 0;
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > until) {
        // It started although it should not have.
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    output = text.str();
    return status;
  }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << text;
    return path;
  }

  const std::string dir_;
  TestCa ca_;
  int runs_ = 0;
};

TEST_F(StartupTest, EveryBadSettingIsACleanExitNamingIt) {
  const CertFiles leaf = ca_.Issue({"listener", {"localhost"}, {"127.0.0.1"}});
  const CertFiles other = ca_.Issue({"other", {"localhost"}, {}});
  const std::string missing = dir_ + "/does-not-exist.pem";
  const std::string bad_identities =
      Write("bad-identities.txt", "erin api.example.com\nfrank *example.com\n");
  const std::string bad_token_identity =
      Write("bad-token-identity.txt", "token-0123456789abcdef bad/identity\n");
  const std::string garbage = Write("garbage.pem", "not a certificate\n");
  const std::string bad_config = Write("bad.textproto", "workerz: 3\n");
  const std::string bad_tokens = Write("tokens.txt", "only-one-field\n");
  const std::string bad_origin =
      Write("bad-origin.textproto",
            "origins { match: \"*.example.com\" }\n"
            "origins { match: \"https://api.openai.com\" inject_headers { "
            "name: \"authorization\" value_file: \"" +
                missing + "\" } }\n");
  const std::vector<Case> cases = {
      {"allow_cidrs",
       {"--allow_cidrs=notacidr"},
       2,
       {"--allow_cidrs", "notacidr"}},
      {"deny_cidrs", {"--deny_cidrs=10.0.0.0/99"}, 2, {"--deny_cidrs"}},
      {"allow_hosts", {"--allow_hosts=*bad"}, 2, {"--allow_hosts"}},
      {"ca_file missing", {"--ca_file=" + missing}, 2, {"--ca_file", missing}},
      {"ca_file garbage", {"--ca_file=" + garbage}, 2, {"--ca_file"}},
      {"auth_tokens_file missing",
       {"--auth_tokens_file=" + missing},
       2,
       {"--auth_tokens_file"}},
      {"auth_tokens_file bad line",
       {"--auth_tokens_file=" + bad_tokens},
       2,
       {"--auth_tokens_file"}},
      {"identity_hosts_file missing",
       {"--identity_hosts_file=" + missing},
       2,
       {"--identity_hosts_file"}},
      {"tls_cert missing",
       {"--tls_cert=" + missing, "--tls_key=" + leaf.key},
       2,
       {"--tls_cert"}},
      {"tls_key missing",
       {"--tls_cert=" + leaf.cert, "--tls_key=" + missing},
       2,
       {"--tls_key"}},
      {"tls_cert alone", {"--tls_cert=" + leaf.cert}, 2, {"--tls_key"}},
      {"tls_key garbage",
       {"--tls_cert=" + leaf.cert, "--tls_key=" + garbage},
       2,
       {"--tls_key", "no PEM private key"}},
      {"tls_cert garbage",
       {"--tls_cert=" + garbage, "--tls_key=" + leaf.key},
       2,
       {"--tls_cert", "no PEM certificate"}},
      {"tls_key of another cert",
       {"--tls_cert=" + leaf.cert, "--tls_key=" + other.key},
       2,
       {"--tls_key", "is not the key of"}},
      {"client_ca garbage",
       {"--tls_cert=" + leaf.cert, "--tls_key=" + leaf.key,
        "--client_ca=" + garbage},
       2,
       {"--client_ca", "no PEM certificate"}},
      {"client_ca missing",
       {"--tls_cert=" + leaf.cert, "--tls_key=" + leaf.key,
        "--client_ca=" + missing},
       2,
       {"--client_ca"}},
      {"config missing", {"--config=" + missing}, 2, {"--config", missing}},
      {"config unknown key",
       {"--config=" + bad_config},
       2,
       {"--config", "workerz"}},
      {"origins entry",
       {"--config=" + bad_origin},
       2,
       {bad_origin +
        ": origins[1] \"https://api.openai.com\": "
        "inject_headers[0].value_file: cannot read " +
        missing}},
      {"workers too many", {"--workers=70000"}, 2, {"--workers"}},
      {"caller rate",
       {"--rate_limit_per_caller=lots"},
       2,
       {"--rate_limit_per_caller", "\"lots\" is not a rate"}},
      {"redis address", {"--redis=redis"}, 2, {"--redis: \"redis\""}},
      {"redis tls without redis", {"--redis_tls"}, 2, {"--redis_tls"}},
      {"redis password file",
       {"--redis=127.0.0.1:6379", "--redis_password_file=/nonexistent/pw"},
       2,
       {"--redis_password_file", "/nonexistent/pw"}},
      {"redis timeout",
       {"--redis=127.0.0.1:6379", "--redis_timeout=0s"},
       2,
       {"--redis_timeout"}},
      {"min_workers zero", {"--min_workers=0"}, 2, {"--min_workers"}},
      {"max below min",
       {"--min_workers=8", "--max_workers=4"},
       2,
       {"--max_workers"}},
      {"workers not a number", {"--workers=many"}, 1, {"workers", "many"}},
      {"unknown flag", {"--no_such_flag=1"}, 1, {"no_such_flag"}},
      {"tls version",
       {"--upstream_tls_min_version=1.1"},
       2,
       {"--upstream_tls_min_version"}},
      {"head limit",
       {"--max_response_head_bytes=10"},
       2,
       {"--max_response_head_bytes"}},
      {"metrics_listen",
       {"--metrics_listen=nonsense"},
       2,
       {"--metrics_listen"}},
      {"listen", {"--listen=nonsense:port"}, 2, {"--listen"}},
      {"open relay",
       {"--listen=0.0.0.0:0"},
       2,
       {"--listen: 0.0.0.0:0 is reachable beyond this machine",
        "--allow_unauthenticated"}},
      {"allow_ports", {"--allow_ports=25,*"}, 2, {"--allow_ports", "alone"}},
      {"allow_ports zero", {"--allow_ports=0"}, 2, {"--allow_ports", "\"0\""}},
      {"allow_hosts star glued",
       {"--allow_hosts=*example.com"},
       2,
       {"--allow_hosts: \"*example.com\"", "whole first label"}},
      {"identity pattern",
       {"--identity_hosts_file=" + bad_identities},
       2,
       {"--identity_hosts_file: " + bad_identities + ":2:",
        "\"*example.com\""}},
      {"token identity",
       {"--auth_tokens_file=" + bad_token_identity},
       2,
       {"--auth_tokens_file: " + bad_token_identity + ":1:",
        "has a character other than"}},
  };
  for (const Case& c : cases) {
    std::string output;
    const int status = Run(c.flags, output);
    ASSERT_TRUE(WIFEXITED(status))
        << c.name << ": ended by signal "
        << (WIFSIGNALED(status) ? WTERMSIG(status) : -1) << "\n"
        << output;
    EXPECT_EQ(WEXITSTATUS(status), c.exit_code) << c.name << "\n" << output;
    for (const std::string& word : c.words) {
      EXPECT_THAT(output, HasSubstr(word)) << c.name;
    }
  }
}

// An open listener is allowed when asked for by name, with a warning.
TEST_F(StartupTest, AllowUnauthenticatedStartsAnOpenListenerWithAWarning) {
  std::string output;
  // Run() waits for an exit; this one serves until SIGTERM.
  const std::string log = absl::StrCat(dir_, "/open.log");
  const pid_t pid = SpawnChild({"service/egressd", "--listen=0.0.0.0:0",
                                "--metrics_listen=", "--allow_unauthenticated"},
                               log, /*stdout_too=*/true);
  ASSERT_GT(pid, 0);
  for (int i = 0; i < 500 && output.find("serving gRPC") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::ifstream in(log);
    output.assign(std::istreambuf_iterator<char>(in), {});
  }
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_THAT(output, HasSubstr("serving gRPC"));
  EXPECT_THAT(output, HasSubstr("--allow_unauthenticated: listening on "
                                "0.0.0.0:0 without caller authentication"));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
}

// --policy_check prints the decision rule by rule and exits 0 (allowed) or 1
// (refused), without starting the service; IP literals need no DNS.
TEST_F(StartupTest, PolicyCheckExplainsTheDecision) {
  const std::string ids = Write(
      "check-ids.txt",
      "spiffe://cluster.local/ns/shop/sa/cart 93.184.215.14 ports=8443\n");
  std::string output;
  int status = Run({"--policy_check=http://93.184.215.14:25/"}, output);
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 1) << output;
  EXPECT_THAT(output, HasSubstr("port 25: not in --allow_ports (80,443): "
                                "REFUSED\nverdict: REFUSED "
                                "(PERMISSION_DENIED): port 25 refused by "
                                "policy"));
  status = Run({"--policy_check=https://93.184.215.14:8443/x",
                "--policy_check_caller=spiffe://cluster.local/ns/shop/sa/cart",
                "--identity_hosts_file=" + ids},
               output);
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  EXPECT_THAT(output, HasSubstr("address 93.184.215.14: public\n"
                                "verdict: ALLOWED\n"));
  status =
      Run({"--policy_check=http://93.184.215.14/", "--deny_hosts=*x*"}, output);
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 2) << output;
  EXPECT_THAT(output, HasSubstr("--deny_hosts"));
}

}  // namespace
}  // namespace egress
