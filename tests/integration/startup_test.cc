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
  const std::string garbage = Write("garbage.pem", "not a certificate\n");
  const std::string bad_config = Write("bad.textproto", "workerz: 3\n");
  const std::string bad_tokens = Write("tokens.txt", "only-one-field\n");
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
      {"workers zero", {"--workers=0"}, 2, {"--workers"}},
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

}  // namespace
}  // namespace egress
