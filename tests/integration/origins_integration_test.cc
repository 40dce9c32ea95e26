// Per-origin settings of the real egressd, against servers nobody here wrote,
// started on loopback: Debian's squid and tinyproxy as upstream proxies (http,
// https through CONNECT, proxy authentication, a proxy that refuses, a proxy
// that is down) with httpbin (gunicorn) and `openssl s_server` behind them; a
// credential injected into httpbin's /headers for one caller and not another,
// rotated, and never printed; an upstream that requires a client certificate
// (`openssl s_server -Verify`); outlier ejection of an nginx that is stopped
// and started; and reloads of the config file during 50 streams.
//
// scripts/setup.sh --tests installs squid, tinyproxy, gunicorn,
// python3-httpbin and nginx.
#include <httplib.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/egress_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/child_process.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/test_certs.h"
#include "tests/integration/egressd_process.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

// The credentials the proxies take ("egress:s3cret-proxy-pass"), and squid's
// htpasswd line for them (openssl passwd -apr1 -salt egress).
constexpr char kProxyUser[] = "egress";
constexpr char kProxyPassword[] = "s3cret-proxy-pass";

struct Child {
  pid_t pid = -1;
  int port = 0;
  void Stop() {
    if (pid > 0) StopChild(pid);
    pid = -1;
  }
};

void WriteFile(const std::string& path, const std::string& text) {
  // Written aside and renamed: a reader sees the old file or the new one.
  const std::string next = path + ".next";
  std::ofstream(next, std::ios::trunc) << text;
  ASSERT_EQ(rename(next.c_str(), path.c_str()), 0) << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

class OriginsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // squid drops to its own user: its files go in a directory anyone may
    // write (TEST_TMPDIR may be under a private home).
    char dir[] = "/tmp/egress-origins-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    chmod(dir_.c_str(), 0777);
    ca_ = new TestCa(dir_);
    CertFiles server = ca_->Issue({"upstream", {"localhost"}, {"127.0.0.1"}});
    client_cert_ = new CertFiles(ca_->Issue({"egress-client", {}, {}}));

    httpbin_.port = FreeLoopbackPort();
    httpbin_.pid =
        SpawnChild({"/usr/bin/gunicorn", "-k", "gthread", "--threads", "16",
                    "-w", "1", "--keep-alive", "30", "-b",
                    absl::StrCat("127.0.0.1:", httpbin_.port), "httpbin:app"},
                   dir_ + "/gunicorn.log", /*stdout_too=*/true);

    // https behind the proxies: s_server's status page over HTTP/1.0.
    tls_.port = FreeLoopbackPort();
    tls_.pid = SpawnChild({"/usr/bin/openssl", "s_server", "-accept",
                           absl::StrCat("127.0.0.1:", tls_.port), "-cert",
                           server.cert, "-key", server.key, "-www", "-quiet"},
                          dir_ + "/s_server.log", /*stdout_too=*/true);
    // A server whose certificate names only "internal.test" (no address).
    CertFiles internal = ca_->Issue({"internal", {"internal.test"}, {}});
    sni_.port = FreeLoopbackPort();
    sni_.pid = SpawnChild(
        {"/usr/bin/openssl", "s_server", "-accept",
         absl::StrCat("127.0.0.1:", sni_.port), "-cert", internal.cert, "-key",
         internal.key, "-www", "-quiet", "-tls1_2"},
        dir_ + "/s_server_sni.log", /*stdout_too=*/true);
    // An upstream that requires a client certificate signed by the CA.
    mtls_.port = FreeLoopbackPort();
    mtls_.pid = SpawnChild({"/usr/bin/openssl", "s_server", "-accept",
                            absl::StrCat("127.0.0.1:", mtls_.port), "-cert",
                            server.cert, "-key", server.key, "-CAfile",
                            ca_->cert_path(), "-Verify", "1", "-www", "-quiet"},
                           dir_ + "/s_server_mtls.log", /*stdout_too=*/true);

    // squid with Basic authentication; it refuses tunnels to one port.
    refused_port_ = FreeLoopbackPort();
    std::ofstream(dir_ + "/passwd")
        << kProxyUser << ":$apr1$egress$NY3yYuVHbk3/R7pMxpRKx.\n";
    squid_.port = FreeLoopbackPort();
    std::ofstream(dir_ + "/squid.conf") << absl::StrCat(
        "http_port 127.0.0.1:", squid_.port, "\n", "pid_filename ", dir_,
        "/squid.pid\n", "access_log stdio:", dir_, "/squid-access.log\n",
        "cache_log ", dir_, "/squid-cache.log\n",
        "cache deny all\ncache_mem 8 MB\ncoredump_dir ", dir_, "\n",
        "shutdown_lifetime 0 seconds\n",
        "auth_param basic program /usr/lib/squid/basic_ncsa_auth ", dir_,
        "/passwd\n", "auth_param basic realm egress-test\n",
        "acl authed proxy_auth REQUIRED\n", "acl refused_port port ",
        refused_port_, "\n", "http_access deny refused_port\n",
        "http_access allow localhost authed\n", "http_access deny all\n");
    squid_.pid =
        SpawnChild({"/usr/sbin/squid", "-N", "-f", dir_ + "/squid.conf"},
                   dir_ + "/squid.log", /*stdout_too=*/true);
    // tinyproxy, open to loopback callers.
    tinyproxy_.port = FreeLoopbackPort();
    std::ofstream(dir_ + "/tinyproxy.conf") << absl::StrCat(
        "Port ", tinyproxy_.port, "\nListen 127.0.0.1\nTimeout 30\n",
        "MaxClients 100\nLogFile \"", dir_, "/tinyproxy.log\"\n",
        "LogLevel Connect\nPidFile \"", dir_, "/tinyproxy.pid\"\n",
        "Allow 127.0.0.1\n");
    tinyproxy_.pid =
        SpawnChild({"/usr/bin/tinyproxy", "-d", "-c", dir_ + "/tinyproxy.conf"},
                   dir_ + "/tinyproxy.out", /*stdout_too=*/true);

    struct Started {
      Child* child;
      const char* name;
      const char* log;  // in dir_
    };
    for (const Started& s :
         {Started{&httpbin_, "gunicorn (python3-httpbin)", "gunicorn.log"},
          Started{&tls_, "openssl s_server", "s_server.log"},
          Started{&mtls_, "openssl s_server -Verify", "s_server_mtls.log"},
          Started{&sni_, "openssl s_server (internal.test)",
                  "s_server_sni.log"},
          Started{&squid_, "squid", "squid-cache.log"},
          Started{&tinyproxy_, "tinyproxy", "tinyproxy.out"}}) {
      ASSERT_TRUE(WaitForLoopbackPort(s.child->port, seconds(30)))
          << s.name << " did not start (scripts/setup.sh --tests installs "
          << "it); its log:\n"
          << ReadFile(dir_ + "/" + s.log);
    }
    WriteFile(dir_ + "/proxy-credentials",
              absl::StrCat(kProxyUser, ":", kProxyPassword, "\n"));
    WriteFile(dir_ + "/tokens",
              "token-alice-0123456789 alice\ntoken-bob-0123456789 bob\n");
  }

  static void TearDownTestSuite() {
    for (Child* child :
         {&httpbin_, &tls_, &mtls_, &sni_, &squid_, &tinyproxy_}) {
      child->Stop();
    }
    delete client_cert_;
    delete ca_;
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // egressd with `config` as its --config file, metrics on an ephemeral port.
  std::unique_ptr<EgressdProcess> Start(const std::string& config,
                                        std::vector<std::string> flags = {}) {
    config_path_ = dir_ + "/egressd-" + std::to_string(++configs_) + ".conf";
    WriteFile(config_path_, config);
    flags.push_back("--config=" + config_path_);
    flags.push_back("--metrics_listen=127.0.0.1:0");
    flags.push_back("--ca_file=" + ca_->cert_path());
    flags.push_back("--access_log");
    auto egressd = std::make_unique<EgressdProcess>(flags);
    EXPECT_GT(egressd->port(), 0) << egressd->Log();
    return egressd;
  }

  // egressd writes its log in batches: waits (bounded) for `text` to show.
  static bool LogShows(const EgressdProcess& egressd, const std::string& text) {
    for (int i = 0; i < 50; ++i) {
      if (absl::StrContains(egressd.Log(), text)) return true;
      std::this_thread::sleep_for(milliseconds(100));
    }
    ADD_FAILURE() << "no \"" << text << "\" in:\n" << egressd.Log();
    return false;
  }

  static std::string Metrics(const EgressdProcess& egressd) {
    return egressd.Metrics();
  }
  static double Series(const std::string& text, const std::string& series) {
    return EgressdProcess::Series(text, series);
  }

  // A call to `url` that must fail UNAVAILABLE with `reason`, naming the
  // proxy on `proxy_port`: its details and its message.
  static std::pair<ErrorDetails, std::string> ProxyFailure(
      const EgressClient& client, const std::string& url,
      const std::string& reason, int proxy_port) {
    absl::StatusOr<Response> r = client.Get(url);
    EXPECT_FALSE(r.ok()) << url;
    if (r.ok()) return {};
    EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
    ErrorDetails details = ErrorDetailsOf(r.status());
    EXPECT_EQ(details.reason, reason) << r.status();
    EXPECT_EQ(details.metadata["proxy"],
              absl::StrCat("http://127.0.0.1:", proxy_port));
    return {details, std::string(r.status().message())};
  }

  static std::string Httpbin(const std::string& path) {
    return absl::StrCat("http://127.0.0.1:", httpbin_.port, path);
  }
  static std::string Tls(const std::string& path = "/") {
    return absl::StrCat("https://127.0.0.1:", tls_.port, path);
  }

  static std::string dir_;
  static TestCa* ca_;
  static CertFiles* client_cert_;
  static Child httpbin_, tls_, mtls_, sni_, squid_, tinyproxy_;
  static int refused_port_;
  std::string config_path_;
  int configs_ = 0;
};

std::string OriginsTest::dir_;
TestCa* OriginsTest::ca_ = nullptr;
CertFiles* OriginsTest::client_cert_ = nullptr;
Child OriginsTest::httpbin_, OriginsTest::tls_, OriginsTest::mtls_,
    OriginsTest::sni_, OriginsTest::squid_, OriginsTest::tinyproxy_;
int OriginsTest::refused_port_ = 0;

// --- Upstream proxies --------------------------------------------------------

// Both proxies carry plain http (absolute form, on a kept-alive connection)
// and https (a CONNECT tunnel, TLS verified end to end inside it).
TEST_F(OriginsTest, SquidAndTinyproxyCarryHttpAndHttps) {
  struct Proxy {
    const char* name;
    int port;
    bool credentials;
    std::string log;
  };
  for (const Proxy& proxy :
       {Proxy{"squid", squid_.port, true, dir_ + "/squid-access.log"},
        Proxy{"tinyproxy", tinyproxy_.port, false, dir_ + "/tinyproxy.log"}}) {
    SCOPED_TRACE(proxy.name);
    const std::string settings = absl::StrCat(
        "proxy { url: \"http://127.0.0.1:", proxy.port, "\"",
        proxy.credentials ? absl::StrCat(" credentials_file: \"", dir_,
                                         "/proxy-credentials\"")
                          : "",
        " }");
    auto egressd = Start(absl::StrCat(
        "origins { match: \"http://127.0.0.1:", httpbin_.port, "\" ", settings,
        " }\norigins { match: \"https://127.0.0.1:", tls_.port, "\" ", settings,
        " }\n"));
    EgressClient client(absl::StrCat("127.0.0.1:", egressd->port()));

    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<Response> r = client.Get(Httpbin("/headers"));
      ASSERT_TRUE(r.ok()) << r.status() << "\n" << egressd->Log();
      EXPECT_EQ(r->status, 200);
      // The credentials stay with the proxy.
      EXPECT_THAT(r->body, Not(HasSubstr("Proxy-Authorization")));
    }
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<Response> r = client.Get(Tls("/"));
      ASSERT_TRUE(r.ok()) << r.status() << "\n" << egressd->Log();
      EXPECT_EQ(r->status, 200);
    }
    const std::string metrics = Metrics(*egressd);
    if (proxy.credentials) {
      // squid keeps its callers' connections alive: three http calls, one
      // connection to the proxy. (tinyproxy closes each after its answer.)
      EXPECT_GE(
          Series(metrics, "egress_connections_reused_total{origin=\"other\"}"),
          2)
          << metrics;
    }
    const std::string log = ReadFile(proxy.log);
    EXPECT_THAT(log, HasSubstr(absl::StrCat("127.0.0.1:", tls_.port)))
        << "the tunnel went through " << proxy.name;
    EXPECT_THAT(log, HasSubstr(absl::StrCat("127.0.0.1:", httpbin_.port)));
    EXPECT_THAT(egressd->Log(), Not(HasSubstr(kProxyPassword)));
    EXPECT_THAT(metrics, Not(HasSubstr(kProxyPassword)));
  }
}

// Without its credentials squid answers 407: for https the tunnel is
// refused, for http the 407 is the proxy's, not the origin's.
TEST_F(OriginsTest, AProxyThatWantsCredentialsIsAProxyRefusal) {
  auto egressd = Start(absl::StrCat(
      "origins { match: \"127.0.0.1\" proxy { url: \"http://127.0.0.1:",
      squid_.port, "\" } }\n"));
  EgressClient client(absl::StrCat("127.0.0.1:", egressd->port()));
  for (const std::string& url : {Tls("/"), Httpbin("/get")}) {
    SCOPED_TRACE(url);
    auto [details, message] =
        ProxyFailure(client, url, "PROXY_REFUSED", squid_.port);
    EXPECT_EQ(details.metadata["proxy_status"], "407");
    EXPECT_THAT(message, HasSubstr("refused the request with status 407"));
  }
  EXPECT_EQ(Series(Metrics(*egressd),
                   "egress_call_failures_total{reason=\"PROXY_REFUSED\"}"),
            2);
}

// squid's own policy refuses the tunnel: 403, reported as the proxy's.
TEST_F(OriginsTest, AProxyThatRefusesTheTunnel) {
  auto egressd = Start(absl::StrCat(
      "origins { match: \"*\" proxy { url: \"http://127.0.0.1:", squid_.port,
      "\" credentials_file: \"", dir_, "/proxy-credentials\" } }\n"));
  EgressClient client(absl::StrCat("127.0.0.1:", egressd->port()));
  const ErrorDetails details =
      ProxyFailure(client,
                   absl::StrCat("https://127.0.0.1:", refused_port_, "/"),
                   "PROXY_REFUSED", squid_.port)
          .first;
  EXPECT_EQ(details.metadata.at("proxy_status"), "403");
}

TEST_F(OriginsTest, AProxyThatIsDownIsAProxyConnectFailure) {
  const int down = FreeLoopbackPort();
  auto egressd = Start(absl::StrCat(
      "origins { match: \"*\" proxy { url: \"http://127.0.0.1:", down,
      "\" } ejection { consecutive_failures: 0 } }\n"));
  EgressClient client(absl::StrCat("127.0.0.1:", egressd->port()));
  for (const std::string& url : {Tls("/"), Httpbin("/get")}) {
    SCOPED_TRACE(url);
    auto [details, message] =
        ProxyFailure(client, url, "PROXY_CONNECT_FAILED", down);
    EXPECT_THAT(message,
                HasSubstr(absl::StrCat("via proxy http://127.0.0.1:", down)));
  }
  // An origin given as a private address is refused before any proxy is
  // asked: the proxy would connect to it as it is.
  absl::StatusOr<Response> r = client.Get("http://10.1.2.3/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorDetailsOf(r.status()).reason, "DESTINATION_DENIED")
      << r.status();
}

// --- Rate limits -------------------------------------------------------------

// An origin's rate limit: its burst goes at once, calls over it are refused
// with RATE_LIMITED and when their turn would come, or (with max_wait) wait
// their turn; a caller's own limit holds that caller and no other.
TEST_F(OriginsTest, RateLimitsHoldPerOriginAndPerCaller) {
  const std::string origin = absl::StrCat("http://127.0.0.1:", httpbin_.port);
  const std::string flags_tokens = "--auth_tokens_file=" + dir_ + "/tokens";
  ClientOptions alice_options;
  alice_options.bearer_token = "token-alice-0123456789";
  ClientOptions bob_options;
  bob_options.bearer_token = "token-bob-0123456789";

  // 10/s, a burst of 2, no wait: 12 calls in a row.
  {
    auto egressd = Start(absl::StrCat("origins { match: \"", origin,
                                      "\" rate_limit { rate: \"10/s\" "
                                      "burst: 2 } }\n"),
                         {flags_tokens});
    EgressClient alice(absl::StrCat("127.0.0.1:", egressd->port()),
                       alice_options);
    int ok = 0, limited = 0;
    const auto began = std::chrono::steady_clock::now();
    for (int i = 0; i < 12; ++i) {
      absl::StatusOr<Response> r = alice.Get(Httpbin("/get"));
      if (r.ok()) {
        EXPECT_EQ(r->status, 200);
        ++ok;
        continue;
      }
      ++limited;
      EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
      ErrorDetails details = ErrorDetailsOf(r.status());
      EXPECT_EQ(details.reason, "RATE_LIMITED") << r.status();
      EXPECT_EQ(details.metadata["origin"], origin);
      EXPECT_THAT(details.metadata["limit"],
                  HasSubstr("rate_limit of origins[0]"));
      ASSERT_TRUE(details.retry_delay.has_value());
      EXPECT_LE(*details.retry_delay, milliseconds(100));
      EXPECT_THAT(std::string(r.status().message()),
                  HasSubstr("the upstream was not contacted"));
    }
    // The burst, and the calls the 10/s let through while they ran (however
    // slow the machine).
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began)
            .count();
    EXPECT_GE(ok, 2);
    EXPECT_LE(ok, 2 + static_cast<int>(took * 10) + 1) << took << " s";
    if (took < 0.9) EXPECT_GE(limited, 1) << "12 calls in " << took << " s";
    EXPECT_EQ(Series(Metrics(*egressd),
                     "egress_call_failures_total{reason=\"RATE_LIMITED\"}"),
              limited);
  }

  // With max_wait: 22 calls from 4 threads all go, over (22 - 2) / 10 s.
  {
    auto egressd =
        Start(absl::StrCat("origins { match: \"", origin,
                           "\" rate_limit { rate: \"10/s\" "
                           "burst: 2 max_wait { seconds: 10 } } }\n"),
              {flags_tokens});
    EgressClient alice(absl::StrCat("127.0.0.1:", egressd->port()),
                       alice_options);
    std::atomic<int> ok{0};
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> callers;
    for (int t = 0; t < 4; ++t) {
      callers.emplace_back([&, t] {
        for (int i = t; i < 22; i += 4) {
          absl::StatusOr<Response> r = alice.Get(Httpbin("/get"));
          EXPECT_TRUE(r.ok()) << r.status();
          if (r.ok()) ++ok;
        }
      });
    }
    for (auto& caller : callers) caller.join();
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(ok.load(), 22);
    EXPECT_GE(took, milliseconds(1900));
    EXPECT_LE(took, seconds(8));
  }

  // A caller's own limit: alice over hers, bob free.
  {
    auto egressd = Start("", {flags_tokens, "--rate_limit_per_caller=5/s"});
    EgressClient alice(absl::StrCat("127.0.0.1:", egressd->port()),
                       alice_options);
    EgressClient bob(absl::StrCat("127.0.0.1:", egressd->port()), bob_options);
    int alice_ok = 0, alice_limited = 0;
    const auto began = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; ++i) {
      absl::StatusOr<Response> r = alice.Get(Httpbin("/get"));
      if (r.ok()) {
        ++alice_ok;
        continue;
      }
      ++alice_limited;
      ErrorDetails details = ErrorDetailsOf(r.status());
      EXPECT_EQ(details.reason, "RATE_LIMITED") << r.status();
      EXPECT_EQ(details.metadata["caller"], "alice");
      EXPECT_EQ(details.metadata["limit"], "--rate_limit_per_caller");
    }
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began)
            .count();
    EXPECT_GE(alice_ok, 5);
    EXPECT_LE(alice_ok, 5 + static_cast<int>(took * 5) + 1) << took << " s";
    if (took < 0.9) EXPECT_GE(alice_limited, 1) << "10 calls in " << took;
    for (int i = 0; i < 5; ++i) {
      absl::StatusOr<Response> r = bob.Get(Httpbin("/get"));
      EXPECT_TRUE(r.ok()) << r.status();
    }
  }
}

// --- Injected credentials ----------------------------------------------------

TEST_F(OriginsTest, ACredentialIsInjectedForOneCallerRotatedAndNeverPrinted) {
  const std::string key = dir_ + "/httpbin-key";
  WriteFile(key, "sk-live-first-0001\n");
  auto egressd = Start(
      absl::StrCat("origins { match: \"http://127.0.0.1:", httpbin_.port,
                   "\" inject_headers { name: \"X-Api-Key\" value_file: \"",
                   key, "\" callers: \"alice\" } }\n"),
      {"--auth_tokens_file=" + dir_ + "/tokens"});
  ClientOptions alice_options;
  alice_options.bearer_token = "token-alice-0123456789";
  ClientOptions bob_options;
  bob_options.bearer_token = "token-bob-0123456789";
  EgressClient alice(absl::StrCat("127.0.0.1:", egressd->port()),
                     alice_options);
  EgressClient bob(absl::StrCat("127.0.0.1:", egressd->port()), bob_options);
  std::vector<std::string> errors;

  absl::StatusOr<Response> r = alice.Get(Httpbin("/headers"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->body, HasSubstr("\"X-Api-Key\":\"sk-live-first-0001\""));
  r = bob.Get(Httpbin("/headers"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->body, Not(HasSubstr("X-Api-Key")));

  // Alice may not bring her own: egress holds that header.
  r = alice.Get(Httpbin("/headers"), {{"x-api-key", "sk-mine"}});
  ASSERT_FALSE(r.ok());
  errors.push_back(std::string(r.status().message()));
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_THAT(errors.back(), HasSubstr("header X-Api-Key is set by egress"));
  // Bob, for whom nothing is injected, may.
  r = bob.Get(Httpbin("/headers"), {{"x-api-key", "bobs-own"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->body, HasSubstr("bobs-own"));

  // The Secret rotates: the next call carries the new value.
  WriteFile(key, "sk-live-second-0002\n");
  r = alice.Get(Httpbin("/headers"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->body, HasSubstr("\"X-Api-Key\":\"sk-live-second-0002\""));

  // A removed Secret: the call is refused, naming the file, not the value.
  ASSERT_EQ(unlink(key.c_str()), 0);
  r = alice.Get(Httpbin("/headers"));
  ASSERT_FALSE(r.ok());
  errors.push_back(std::string(r.status().message()));
  EXPECT_EQ(ErrorDetailsOf(r.status()).reason, "CREDENTIAL_UNAVAILABLE");
  EXPECT_THAT(errors.back(), HasSubstr(key));
  WriteFile(key, "sk-live-second-0002\n");

  // Nothing egress printed holds a value: its log (access lines included),
  // its metrics, its errors.
  const std::string everything = absl::StrCat(egressd->Log(), Metrics(*egressd),
                                              absl::StrJoin(errors, "\n"));
  EXPECT_TRUE(LogShows(*egressd, "reason=CREDENTIAL_UNAVAILABLE"))
      << "the access log is on: there are lines to search";
  for (const char* secret : {"sk-live-first-0001", "sk-live-second-0002"}) {
    EXPECT_THAT(everything, Not(HasSubstr(secret)));
  }
}

// --- Client certificates -----------------------------------------------------

TEST_F(OriginsTest, AClientCertificateIsPresentedWhereItsEntrySays) {
  auto egressd = Start(absl::StrCat(
      "origins { match: \"https://127.0.0.1:", mtls_.port, "\" client_cert: \"",
      client_cert_->cert, "\" client_key: \"", client_cert_->key,
      "\" ca_file: \"", ca_->cert_path(), "\" }\n"));
  EgressClient client(absl::StrCat("127.0.0.1:", egressd->port()));
  absl::StatusOr<Response> r =
      client.Get(absl::StrCat("https://127.0.0.1:", mtls_.port, "/"));
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << egressd->Log();
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->body, HasSubstr("egress-client")) << "s_server saw it";
  // The same server under another name, which no entry matches: no
  // certificate, and s_server -Verify refuses the connection.
  r = client.Get(absl::StrCat("https://localhost:", mtls_.port, "/"));
  ASSERT_FALSE(r.ok()) << r->body;
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(ErrorDetailsOf(r.status()).reason,
              AnyOf("TLS_HANDSHAKE_FAILED", "UPSTREAM_RESET"))
      << r.status();
}

// An origin reached by address whose certificate names another host: the
// entry's sni is sent and verified; without it the name does not match. Its
// tls_min_version 1.3 then refuses the same server, which speaks 1.2 only.
TEST_F(OriginsTest, AnEntrysSniAndTlsMinimumApply) {
  const std::string url = absl::StrCat("https://127.0.0.1:", sni_.port, "/");
  auto egressd =
      Start(absl::StrCat("origins { match: \"", url.substr(0, url.size() - 1),
                         "\" sni: \"internal.test\" }\n"));
  EgressClient client(absl::StrCat("127.0.0.1:", egressd->port()));
  absl::StatusOr<Response> r = client.Get(url);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  r = client.Get(absl::StrCat("https://localhost:", sni_.port, "/"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorDetailsOf(r.status()).reason, "TLS_VERIFY_FAILED")
      << r.status();

  auto strict = Start(
      absl::StrCat("origins { match: \"", url.substr(0, url.size() - 1),
                   "\" sni: \"internal.test\" tls_min_version: \"1.3\" }\n"));
  EgressClient strict_client(absl::StrCat("127.0.0.1:", strict->port()));
  r = strict_client.Get(url);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorDetailsOf(r.status()).reason, "TLS_HANDSHAKE_FAILED")
      << r.status();
}

// --- Outlier ejection --------------------------------------------------------

TEST_F(OriginsTest, AStoppedUpstreamIsEjectedAndAProbeBringsItBack) {
  // nginx, which the test stops and starts on the same port.
  const int port = FreeLoopbackPort();
  const std::string root = dir_ + "/www";
  mkdir(root.c_str(), 0755);
  std::ofstream(root + "/index.html") << "nginx is back\n";
  std::ofstream(dir_ + "/nginx.conf") << absl::StrCat(
      "daemon off; master_process off; worker_processes 1;\n", "pid ", dir_,
      "/nginx.pid; error_log ", dir_, "/nginx.err;\n",
      "events { worker_connections 64; }\n",
      "http { access_log off; client_body_temp_path ", dir_, "/cb; ",
      "proxy_temp_path ", dir_, "/px; fastcgi_temp_path ", dir_, "/fc; ",
      "uwsgi_temp_path ", dir_, "/uw; scgi_temp_path ", dir_, "/sc;\n",
      "  server { listen 127.0.0.1:", port, "; root ", root, "; } }\n");
  const auto start_nginx = [&] {
    return SpawnChild(
        {"/usr/sbin/nginx", "-c", dir_ + "/nginx.conf", "-p", dir_},
        dir_ + "/nginx.log", /*stdout_too=*/true);
  };
  auto egressd = Start(absl::StrCat(
      "origins { match: \"http://127.0.0.1:", port,
      "\" ejection { consecutive_failures: 3 base_time { nanos: 500000000 } "
      "} }\n"));
  EgressClient client(absl::StrCat("127.0.0.1:", egressd->port()));
  const std::string url = absl::StrCat("http://127.0.0.1:", port, "/");

  // Stopped: three refusals, then calls fail at once.
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Response> r = client.Get(url);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(ErrorDetailsOf(r.status()).reason, "CONNECT_REFUSED")
        << r.status();
  }
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<Response> r = client.Get(url);
    ASSERT_FALSE(r.ok());
    const ErrorDetails details = ErrorDetailsOf(r.status());
    if (details.reason != "ORIGIN_EJECTED") {
      // The ejection is 500 ms: on a slow machine it may be over already,
      // and the probe then failed and ejected it again, for longer.
      EXPECT_EQ(details.reason, "CONNECT_REFUSED") << r.status();
      continue;
    }
    EXPECT_TRUE(absl::IsUnavailable(r.status()));
    ASSERT_TRUE(details.retry_delay.has_value());
    EXPECT_LE(*details.retry_delay, seconds(10));
    EXPECT_EQ(details.metadata.at("origin"), url.substr(0, url.size() - 1));
  }
  std::string metrics = Metrics(*egressd);
  EXPECT_GE(Series(metrics, "egress_origin_ejections_total"), 1) << metrics;
  EXPECT_EQ(Series(metrics, "egress_origins_ejected"), 1);
  EXPECT_GE(
      Series(metrics, "egress_call_failures_total{reason=\"ORIGIN_EJECTED\"}"),
      1);

  // Started again: once the time is up, a probe gets through, and the
  // origin is back (bounded: 40 s covers several doublings).
  Child nginx{start_nginx(), port};
  ASSERT_TRUE(WaitForLoopbackPort(port, seconds(10)));
  bool back = false;
  const auto until = std::chrono::steady_clock::now() + seconds(40);
  while (!back && std::chrono::steady_clock::now() < until) {
    absl::StatusOr<Response> r = client.Get(url);
    back = r.ok() && r->status == 200;
    if (!back) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(back) << egressd->Log();
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<Response> r = client.Get(url);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "nginx is back\n");
  }
  metrics = Metrics(*egressd);
  EXPECT_EQ(Series(metrics, "egress_origins_ejected"), 0) << metrics;
  EXPECT_TRUE(LogShows(*egressd, "answered the probe call"));
  nginx.Stop();
}

// --- Hot reload --------------------------------------------------------------

TEST_F(OriginsTest, ReloadsDuringFiftyStreamsLoseNoneAndABrokenOneIsRefused) {
  FakeUpstream slow;
  const std::string key = dir_ + "/reload-key";
  const std::string next_key = dir_ + "/reload-key-next";
  WriteFile(key, "reload-secret-one\n");
  WriteFile(next_key, "reload-secret-two\n");
  const auto config = [&](const std::string& value_file,
                          const std::string& allow_hosts) {
    return absl::StrCat("allow_hosts: \"", allow_hosts, "\"\n",
                        "origins { match: \"http://127.0.0.1:", httpbin_.port,
                        "\" inject_headers { name: \"X-Api-Key\" ",
                        "value_file: \"", value_file, "\" } }\n");
  };
  auto egressd = Start(config(key, "127.0.0.1,localhost"), {"--workers=64"});
  EgressClient client(absl::StrCat("127.0.0.1:", egressd->port()));
  const std::string localhost =
      absl::StrCat("http://localhost:", httpbin_.port, "/get");
  ASSERT_TRUE(client.Get(localhost).ok());

  // 50 streams in flight at the upstream.
  std::atomic<int> whole{0};
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> streams;
  for (int i = 0; i < 50; ++i) {
    streams.emplace_back([&] {
      Request request;
      request.url = slow.Url("/slow/6000");
      std::string body;
      absl::Status done = client.Stream(
          request, [](const Response&) {},
          [&](absl::string_view bytes) {
            body.append(bytes.data(), bytes.size());
            return true;
          });
      if (done.ok()) {
        ++whole;
      } else {
        std::lock_guard<std::mutex> lock(mu);
        failures.push_back(done.ToString());
      }
    });
  }
  for (int i = 0; i < 500 && slow.requests() < 50; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(slow.requests(), 50);

  // A new credential and a shorter allow list, noticed in the file.
  WriteFile(config_path_, config(next_key, "127.0.0.1"));
  const std::string applied = "egress_config_reloads_total{result=\"applied\"}";
  for (int i = 0; i < 100 && Series(Metrics(*egressd), applied) < 1; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_EQ(Series(Metrics(*egressd), applied), 1) << egressd->Log();
  EXPECT_EQ(whole.load(), 0) << "the reload came during the streams";
  for (auto& t : streams) t.join();
  EXPECT_EQ(whole.load(), 50) << absl::StrJoin(failures, "\n");

  absl::StatusOr<Response> r = client.Get(Httpbin("/headers"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->body, HasSubstr("reload-secret-two"));
  r = client.Get(localhost);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorDetailsOf(r.status()).reason, "DESTINATION_DENIED");

  // A broken file is refused whole: the running settings stay.
  WriteFile(config_path_, config(dir_ + "/no-such-key", "127.0.0.1,localhost"));
  const std::string refused = "egress_config_reloads_total{result=\"refused\"}";
  for (int i = 0; i < 100 && Series(Metrics(*egressd), refused) < 1; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(Series(Metrics(*egressd), refused), 1) << egressd->Log();
  EXPECT_TRUE(LogShows(*egressd, "reload refused, the running settings stay"));
  EXPECT_THAT(egressd->Log(), HasSubstr("no-such-key"));
  r = client.Get(Httpbin("/headers"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->body, HasSubstr("reload-secret-two"));
  EXPECT_FALSE(client.Get(localhost).ok()) << "the old allow list stays";

  // SIGHUP reloads at once; a setting only a restart applies is named.
  WriteFile(config_path_,
            config(key, "127.0.0.1,localhost") + "max_queue: 77\n");
  egressd->Signal(SIGHUP);
  for (int i = 0; i < 100 && Series(Metrics(*egressd), applied) < 2; ++i) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(Series(Metrics(*egressd), applied), 2) << egressd->Log();
  EXPECT_TRUE(client.Get(localhost).ok());
  EXPECT_TRUE(
      LogShows(*egressd, "changed but applied only by a restart: max_queue"));
  const std::string printed = absl::StrCat(egressd->Log(), Metrics(*egressd));
  EXPECT_THAT(printed, Not(HasSubstr("reload-secret")));
}

}  // namespace
}  // namespace egress
