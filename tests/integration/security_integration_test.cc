// Security end to end: the destination policy against every loopback spelling
// (the upstream must see no connection at all), DNS rebinding, callers'
// credentials (TLS, mutual TLS, bearer tokens with reload, per-identity hosts),
// and a table of hostile requests that each get their exact code while the
// service keeps serving.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/black_hole.h"
#include "tests/fakes/fake_resolver.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/test_certs.h"
#include "tests/fakes/wait_until.h"
#include "tests/integration/egress_harness.h"

namespace egress {
namespace {

using ::egress::v1::DoRequest;
using ::egress::v1::DoResponse;
using ::testing::HasSubstr;

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream(path) << text;
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class SecurityIntegrationTest : public ::testing::Test {
 protected:
  std::string Port() const { return std::to_string(upstream_.port()); }

  FakeUpstream upstream_;
  FakeResolver resolver_;
  EgressHarness egress_;
};

TEST_F(SecurityIntegrationTest,
       EveryLoopbackSpellingIsRefusedWithoutAConnection) {
  // Started without --allow_cidrs: the policy's defaults apply.
  egress_.Start([](Config& c) { c.allow_cidrs = ""; });
  const std::vector<std::string> hosts = {
      "127.0.0.1",       "127.1",        "2130706433",     "0x7f.0.0.1",
      "0x7f000001",      "017700000001", "[::1]",          "[::ffff:127.0.0.1]",
      "[::ffff:7f00:1]", "localhost",    "127.000.000.001"};
  for (const std::string& host : hosts) {
    DoResponse response;
    grpc::Status status = egress_.Do(
        MakeRequest("GET", absl::StrCat("http://", host, ":", Port(), "/echo")),
        &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << host;
    EXPECT_THAT(status.error_message(),
                HasSubstr("refused by policy: loopback"))
        << host;
  }
  EXPECT_EQ(upstream_.connections(), 0);  // nothing reached the upstream
  EXPECT_EQ(egress_.Metric("egress_policy_denied_total{reason=\"loopback\"}"),
            static_cast<double>(hosts.size()));
  // A refusal by policy is not an upstream failure.
  EXPECT_EQ(
      egress_.Metric("egress_session_recreations_total{reason=\"errors\"}"), 0);
}

TEST_F(SecurityIntegrationTest, MessageNamesTheAddressAndTheRule) {
  egress_.Start([](Config& c) { c.allow_cidrs = ""; });
  DoResponse response;
  grpc::Status status = egress_.Do(
      MakeRequest("GET", absl::StrCat("http://2130706433:", Port(), "/")),
      &response);
  EXPECT_EQ(status.error_message(),
            "connect to 127.0.0.1 refused by policy: loopback address");
}

TEST_F(SecurityIntegrationTest, DnsRebindingToLoopbackIsRefused) {
  resolver_.Set("rebind.test", "127.0.0.1");
  egress_.Start([](Config& c) { c.allow_cidrs = ""; }, &resolver_);
  DoResponse response;
  grpc::Status status = egress_.Do(
      MakeRequest("GET", absl::StrCat("http://rebind.test:", Port(), "/")),
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("connect to 127.0.0.1"));
  EXPECT_EQ(upstream_.connections(), 0);
}

TEST_F(SecurityIntegrationTest, DenyCidrsWinsOverAllowCidrs) {
  egress_.Start([](Config& c) { c.deny_cidrs = "127.0.0.1/32"; });
  DoResponse response;
  grpc::Status status =
      egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(egress_.Metric("egress_policy_denied_total{reason=\"deny_cidrs\"}"),
            1);
  // 127.0.0.2 is still allowed by --allow_cidrs=127.0.0.0/8.
  status = egress_.Do(
      MakeRequest("GET", "http://127.0.0.2:" + Port() + "/echo"), &response);
  EXPECT_NE(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(SecurityIntegrationTest, HostLists) {
  egress_.Start([](Config& c) {
    c.allow_hosts = "localhost,*.allowed.test";
    c.deny_hosts = "bad.allowed.test";
  });
  DoResponse response;
  EXPECT_TRUE(egress_
                  .Do(MakeRequest("GET", upstream_.Url("/echo", "localhost")),
                      &response)
                  .ok());
  grpc::Status status = egress_.Do(MakeRequest("GET", upstream_.Url("/echo")),
                                   &response);  // 127.0.0.1
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("not in --allow_hosts"));
  status =
      egress_.Do(MakeRequest("GET", "http://bad.allowed.test/"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("--deny_hosts"));
  // Other spellings of the same host meet the same rule.
  for (const char* url :
       {"http://bad.allowed.test./", "http://BAD.Allowed.TEST/",
        "http://Bad.Allowed.Test.:8080/"}) {
    status = egress_.Do(MakeRequest("GET", url), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << url;
    EXPECT_THAT(status.error_message(), HasSubstr("--deny_hosts")) << url;
  }
}

TEST_F(SecurityIntegrationTest, BearerTokensAreRequiredAndReloaded) {
  const std::string tokens =
      WriteFile("tokens", "# token identity\nsecret-token-alice-0001 alice\n");
  egress_.Start([&](Config& c) { c.auth_tokens_file = tokens; });
  DoResponse response;
  grpc::Status status =
      egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("missing bearer token"));
  egress_.set_bearer_token("wrong-token-000000000");
  status = egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(status.error_message(), "invalid bearer token");
  egress_.set_bearer_token("secret-token-alice-0001");
  EXPECT_TRUE(
      egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response).ok());
  EXPECT_EQ(upstream_.requests(), 1);

  // Rotate: the new token works after a reload, the old one no longer does.
  WriteFile("tokens", "secret-token-alice-0002 alice\n");
  ASSERT_TRUE(egress_.server().ReloadCallers().ok());
  EXPECT_EQ(egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  egress_.set_bearer_token("secret-token-alice-0002");
  EXPECT_TRUE(
      egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response).ok());

  // A broken file keeps the entries in force.
  WriteFile("tokens", "only-one-field\n");
  EXPECT_FALSE(egress_.server().ReloadCallers().ok());
  EXPECT_TRUE(
      egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response).ok());
}

TEST_F(SecurityIntegrationTest, TokensAreNeverLogged) {
  // The service logs to stderr; capture it around a refused call.
  const std::string tokens =
      WriteFile("tokens2", "secret-token-bob-00001 bob\n");
  egress_.Start([&](Config& c) { c.auth_tokens_file = tokens; });
  ::testing::internal::CaptureStderr();
  egress_.set_bearer_token("leaked-if-logged-12345");
  DoResponse response;
  egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response);
  egress_.set_bearer_token("secret-token-bob-00001");
  egress_.Do(MakeRequest("GET", "http://169.254.169.254/latest/meta-data/"),
             &response);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("auth: refused"));
  EXPECT_THAT(log,
              HasSubstr("policy: caller bob"));  // refusals name the caller
  EXPECT_THAT(log, ::testing::Not(HasSubstr("leaked-if-logged")));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("secret-token-bob")));
  // Nor does the caller's credential travel upstream: the gRPC metadata is
  // egressd's, the request's headers are the only ones sent.
  ASSERT_TRUE(
      egress_.Do(MakeRequest("GET", upstream_.Url("/headers")), &response)
          .ok());
  EXPECT_THAT(response.body(), ::testing::Not(HasSubstr("secret-token-bob")));
  EXPECT_THAT(response.body(), ::testing::Not(HasSubstr("Bearer")));
}

TEST_F(SecurityIntegrationTest, IdentityHostListsLimitACaller) {
  const std::string tokens = WriteFile(
      "tokens3", "token-for-carol-000001 carol\ntoken-for-dave-0000001 dave\n");
  const std::string hosts = WriteFile("hosts3", "carol localhost\n");
  egress_.Start([&](Config& c) {
    c.auth_tokens_file = tokens;
    c.identity_hosts_file = hosts;
  });
  DoResponse response;
  egress_.set_bearer_token("token-for-carol-000001");
  EXPECT_TRUE(egress_
                  .Do(MakeRequest("GET", upstream_.Url("/echo", "localhost")),
                      &response)
                  .ok());
  grpc::Status status =
      egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("not among the hosts this caller"));
  egress_.set_bearer_token(
      "token-for-dave-0000001");  // no line: service policy only
  EXPECT_TRUE(
      egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response).ok());
}

TEST_F(SecurityIntegrationTest, TlsListenerAndMutualTlsIdentity) {
  TestCa ca(::testing::TempDir());
  CertFiles server = ca.Issue({"egressd", {"localhost"}, {"127.0.0.1"}});
  CertFiles client = ca.Issue({"erin", {}, {}});
  const std::string hosts = WriteFile("hosts4", "erin localhost\n");
  egress_.Start(
      [&](Config& c) {
        c.tls_cert = server.cert;
        c.tls_key = server.key;
        c.client_ca = ca.cert_path();
        c.identity_hosts_file = hosts;
      },
      nullptr,
      grpc::SslCredentials({ReadFile(ca.cert_path()), ReadFile(client.key),
                            ReadFile(client.cert)}));
  DoResponse response;
  grpc::Status status = egress_.Do(
      MakeRequest("GET", upstream_.Url("/echo", "localhost")), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // The certificate's common name is the identity: erin may reach only
  // localhost.
  status = egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // Without a client certificate the handshake itself is refused.
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto anonymous = grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", egress_.server().grpc_port()),
      grpc::SslCredentials({ReadFile(ca.cert_path()), "", ""}), args);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(5));
  status = egress::v1::EgressService::NewStub(anonymous)->Do(
      &context, MakeRequest("GET", upstream_.Url("/echo", "localhost")),
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);

  // gRPC itself listens on an abstract Unix socket behind the front, which a
  // process in the same network namespace can find (/proc/net/unix) and
  // reach: without the front's verified certificate, a call from there is
  // UNAUTHENTICATED, never "anonymous".
  const std::string backend = egress_.server().grpc_backend();
  ASSERT_TRUE(absl::StartsWith(backend, "unix-abstract:egressd-")) << backend;
  auto direct =
      grpc::CreateChannel(backend, grpc::InsecureChannelCredentials());
  grpc::ClientContext direct_context;
  direct_context.set_deadline(std::chrono::system_clock::now() +
                              std::chrono::seconds(5));
  status = egress::v1::EgressService::NewStub(direct)->Do(
      &direct_context, MakeRequest("GET", upstream_.Url("/echo", "localhost")),
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << status.error_message();
}

// Cross-protocol relays: SMTP, Redis and memcached are refused by port before
// anything is queued or connected; a port added to --allow_ports works.
TEST_F(SecurityIntegrationTest, OnlyAllowedPortsAreReachable) {
  egress_.Start([&](Config& c) { c.allow_ports = "80,443," + Port(); });
  for (int port : {25, 6379, 11211}) {
    DoResponse response;
    grpc::Status status = egress_.Do(
        MakeRequest("GET", absl::StrCat("http://127.0.0.1:", port, "/")),
        &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << port;
    EXPECT_EQ(status.error_message(),
              absl::StrCat("port ", port,
                           " refused by policy: not in --allow_ports (80,443,",
                           Port(), ")"));
  }
  EXPECT_EQ(egress_.Metric("egress_policy_denied_total{reason=\"port\"}"), 3);
  EXPECT_EQ(egress_.MetricSum("egress_connections_opened_total"), 0);
  DoResponse response;
  grpc::Status status =
      egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), 200);
}

// An identity's ports= replaces --allow_ports for that caller only.
TEST_F(SecurityIntegrationTest, IdentityPortsReplaceAllowPorts) {
  const std::string tokens =
      WriteFile("tokens-ports",
                "token-for-carol-000001 carol\ntoken-for-dave-0000001 dave\n");
  const std::string ids =
      WriteFile("ids-ports", absl::StrCat("carol * ports=", Port(), "\n"));
  egress_.Start([&](Config& c) {
    c.allow_ports = "80,443";
    c.auth_tokens_file = tokens;
    c.identity_hosts_file = ids;
  });
  DoResponse response;
  egress_.set_bearer_token("token-for-carol-000001");
  grpc::Status status =
      egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  egress_.set_bearer_token("token-for-dave-0000001");
  status = egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("not in --allow_ports"));
}

// Identity files are checked like the global lists: a pattern that would
// silently match too much stops the start, naming the file and the line.
TEST_F(SecurityIntegrationTest, MisleadingIdentityPatternsStopTheStart) {
  for (const auto& [text, words] :
       std::vector<std::pair<std::string, std::string>>{
           {"erin api.example.com\nfrank *example.com\n",
            ":2: \"*example.com\" uses \"*\" other than as the whole first "
            "label"},
           {"erin api.example.com,\n", ":1: empty host entry"},
           {"erin api.example.com ports=25,*\n", ":1: ports=: \"*\""},
           {"erin\n", ":1: expected"}}) {
    Config config;
    config.front.listen = "127.0.0.1:0";
    config.metrics_listen = "";
    config.identity_hosts_file = WriteFile("ids-bad", text);
    auto server = EgressServer::Start(config, RealClock::Get());
    ASSERT_FALSE(server.ok()) << text;
    EXPECT_THAT(std::string(server.status().message()),
                HasSubstr(absl::StrCat("--identity_hosts_file: ",
                                       config.identity_hosts_file, words)))
        << text;
  }
}

// mTLS identities as Kubernetes workloads carry them: the SPIFFE ID (URI SAN)
// wins over the common name; a certificate naming nobody is refused, never
// "anonymous".
TEST_F(SecurityIntegrationTest, MutualTlsIdentityIsTheSpiffeIdElseRefused) {
  TestCa ca(::testing::TempDir());
  CertFiles server = ca.Issue({"egressd-spiffe", {"localhost"}, {"127.0.0.1"}});
  CertSpec workload{"cart-workload", {}, {}};
  workload.uris = {"spiffe://cluster.local/ns/shop/sa/cart"};
  CertSpec nameless{"nameless", {}, {}};
  nameless.common_name = false;
  CertSpec two_ids{"two-ids", {}, {}};
  two_ids.uris = {"spiffe://cluster.local/ns/a/sa/x",
                  "spiffe://cluster.local/ns/b/sa/y"};
  CertSpec bad_id{"bad-id", {}, {}};
  bad_id.uris = {"spiffe://cluster.local/ns/../sa/x"};
  const std::string ids = WriteFile(
      "ids-spiffe", "spiffe://cluster.local/ns/shop/sa/cart localhost\n");
  egress_.Start([&](Config& c) {
    c.tls_cert = server.cert;
    c.tls_key = server.key;
    c.client_ca = ca.cert_path();
    c.identity_hosts_file = ids;
  });
  auto call_as = [&](const CertSpec& spec, const std::string& url) {
    CertFiles client = ca.Issue(spec);
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    auto channel = grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", egress_.server().grpc_port()),
        grpc::SslCredentials({ReadFile(ca.cert_path()), ReadFile(client.key),
                              ReadFile(client.cert)}),
        args);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(5));
    DoResponse response;
    return egress::v1::EgressService::NewStub(channel)->Do(
        &context, MakeRequest("GET", url), &response);
  };
  // The SPIFFE ID's line limits it to localhost: 127.0.0.1 is refused.
  grpc::Status status = call_as(workload, upstream_.Url("/echo", "localhost"));
  EXPECT_TRUE(status.ok()) << status.error_message();
  status = call_as(workload, upstream_.Url("/echo"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("not among the hosts"));

  status = call_as(nameless, upstream_.Url("/echo"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("neither a SPIFFE ID (URI SAN) nor a common name"));
  status = call_as(two_ids, upstream_.Url("/echo"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("has 2 SPIFFE IDs"));
  status = call_as(bad_id, upstream_.Url("/echo"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("is not a SPIFFE ID"));
}

// A cancel never blocks one of gRPC's threads: callers cancel a Do and a
// DoStream while egressd is connecting to a black-holed address (a 10 s
// connect timeout); each cancel callback returns within a few milliseconds
// (egress_cancel_callback_seconds), and each call ends at once.
TEST_F(SecurityIntegrationTest, CancelDuringABlackHoledConnectNeverBlocks) {
  BlackHole hole;
  egress_.Start([](Config& c) {
    c.sessions.session.connect_timeout = std::chrono::seconds(10);
    c.workers = 2;
  });
  const std::string url = absl::StrCat("http://127.0.0.1:", hole.port(), "/");
  int cancels = 0;
  for (bool stream : {false, true}) {
    const int connecting_before = hole.Connecting();
    grpc::ClientContext context;
    grpc::Status status;
    std::thread caller([&] {
      if (stream) {
        auto reader = egress_.stub().DoStream(
            &context, egress::v1::ForStream(MakeRequest("GET", url)));
        egress::v1::DoStreamResponse chunk;
        while (reader->Read(&chunk)) {
        }
        status = reader->Finish();
      } else {
        DoResponse response;
        status =
            egress_.stub().Do(&context, MakeRequest("GET", url), &response);
      }
    });
    // Bounded: the cancel comes once egressd's connect is under way (one
    // more socket in SYN_SENT towards the black hole).
    EXPECT_TRUE(WaitUntil([&] {
      return hole.Connecting() > connecting_before;
    })) << stream;
    const auto cancelled = std::chrono::steady_clock::now();
    context.TryCancel();
    caller.join();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
    ++cancels;
    // The worker lets go at once, not at the connect timeout.
    for (int i = 0; i < 200 && egress_.Metric("egress_requests_in_flight") > 0;
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(egress_.Metric("egress_requests_in_flight"), 0) << stream;
    EXPECT_LT(std::chrono::steady_clock::now() - cancelled,
              std::chrono::seconds(3))
        << stream;
    EXPECT_EQ(egress_.Metric("egress_cancel_callback_seconds_count"), cancels)
        << stream;
  }
  const double total = egress_.Metric("egress_cancel_callback_seconds_sum");
  EXPECT_GE(total, 0);
  EXPECT_LT(total / cancels, 0.005) << "seconds per cancel callback";
  std::printf("cancel callbacks: %d, %.1f us each on average\n", cancels,
              total / cancels * 1e6);
  // Every callback landed in the buckets up to 5 ms.
  EXPECT_EQ(
      egress_.Metric("egress_cancel_callback_seconds_bucket{le=\"0.005\"}"),
      cancels);
}

// ---------------------------------------------------------------------------
// Hostile requests: each gets its exact code; the service serves afterwards.

struct Hostile {
  std::string name;
  std::string method;
  std::string url;  // "{U}" is replaced by the upstream's http://127.0.0.1:port
  std::vector<std::pair<std::string, std::string>> headers;
  size_t body_bytes = 0;
  grpc::StatusCode code;
};

std::vector<Hostile> HostileRequests() {
  using C = grpc::StatusCode;
  const C kBad = C::INVALID_ARGUMENT;
  std::vector<Hostile> v = {
      // Request smuggling and header injection.
      {"crlf_in_url", "GET", "{U}/echo\r\nX-Injected: 1", {}, 0, kBad},
      {"lf_in_url", "GET", "{U}/echo\nHost: evil", {}, 0, kBad},
      {"encoded_crlf_is_data", "GET", "{U}/echo%0d%0aX:1", {}, 0, C::OK},
      {"crlf_in_header_value",
       "GET",
       "{U}/echo",
       {{"X-A", "1\r\nX-Injected: 1"}},
       0,
       kBad},
      {"lf_in_header_value", "GET", "{U}/echo", {{"X-A", "1\nX: 2"}}, 0, kBad},
      {"cr_in_header_value", "GET", "{U}/echo", {{"X-A", "1\r"}}, 0, kBad},
      {"nul_in_header_value",
       "GET",
       "{U}/echo",
       {{"X-A", std::string("a\0b", 3)}},
       0,
       kBad},
      {"colon_in_header_name", "GET", "{U}/echo", {{"X-A:", "1"}}, 0, kBad},
      {"space_in_header_name", "GET", "{U}/echo", {{"X A", "1"}}, 0, kBad},
      {"trailing_space_in_name",
       "POST",
       "{U}/echo",
       {{"Transfer-Encoding ", "chunked"}},
       0,
       kBad},
      {"empty_header_name", "GET", "{U}/echo", {{"", "1"}}, 0, kBad},
      {"crlf_in_header_name", "GET", "{U}/echo", {{"X\r\nY", "1"}}, 0, kBad},
      {"transfer_encoding",
       "POST",
       "{U}/echo",
       {{"Transfer-Encoding", "chunked"}},
       0,
       kBad},
      {"transfer_encoding_lower",
       "POST",
       "{U}/echo",
       {{"transfer-encoding", "chunked"}},
       0,
       kBad},
      {"content_length_match",
       "POST",
       "{U}/echo",
       {{"Content-Length", "5"}},
       5,
       C::OK},
      {"content_length_short",
       "POST",
       "{U}/echo",
       {{"Content-Length", "4"}},
       5,
       kBad},
      {"content_length_negative",
       "POST",
       "{U}/echo",
       {{"Content-Length", "-1"}},
       0,
       kBad},
      {"content_length_list",
       "POST",
       "{U}/echo",
       {{"Content-Length", "5, 5"}},
       5,
       kBad},
      {"content_length_twice",
       "POST",
       "{U}/echo",
       {{"Content-Length", "5"}, {"Content-Length", "6"}},
       5,
       kBad},
      {"host_header", "GET", "{U}/echo", {{"Host", "evil.example"}}, 0, kBad},
      {"host_header_upper",
       "GET",
       "{U}/echo",
       {{"HOST", "evil.example"}},
       0,
       kBad},
      {"connection",
       "GET",
       "{U}/echo",
       {{"Connection", "close, X-Secret"}},
       0,
       kBad},
      {"keep_alive", "GET", "{U}/echo", {{"Keep-Alive", "timeout=5"}}, 0, kBad},
      {"upgrade", "GET", "{U}/echo", {{"Upgrade", "h2c"}}, 0, kBad},
      {"te", "GET", "{U}/echo", {{"TE", "trailers"}}, 0, kBad},
      {"trailer", "GET", "{U}/echo", {{"Trailer", "X-A"}}, 0, kBad},
      {"proxy_authorization",
       "GET",
       "{U}/echo",
       {{"Proxy-Authorization", "Basic x"}},
       0,
       kBad},
      {"proxy_connection",
       "GET",
       "{U}/echo",
       {{"Proxy-Connection", "keep-alive"}},
       0,
       kBad},
      {"request_line_in_method",
       "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET",
       "{U}/echo",
       {},
       0,
       kBad},
      {"space_in_method", "G ET", "{U}/echo", {}, 0, kBad},
      {"connect_method", "CONNECT", "{U}/echo", {}, 0, kBad},
      {"overlong_method", std::string(33, 'A'), "{U}/echo", {}, 0, kBad},
      {"lowercase_method_is_a_token", "get", "{U}/echo", {}, 0, C::OK},
      // Huge values.
      {"url_over_8k", "GET", "{U}/" + std::string(9000, 'a'), {}, 0, kBad},
      {"url_of_1mib", "GET", "{U}/" + std::string(1 << 20, 'a'), {}, 0, kBad},
      {"header_value_70k",
       "GET",
       "{U}/echo",
       {{"X-Big", std::string(70 << 10, 'v')}},
       0,
       kBad},
      {"body_over_limit",
       "POST",
       "{U}/echo",
       {},
       (16u << 20) + 1,
       C::RESOURCE_EXHAUSTED},
      {"message_over_grpc_limit",
       "POST",
       "{U}/echo",
       {},
       18u << 20,
       C::RESOURCE_EXHAUSTED},
      // Bytes that are not ASCII.
      // Header fields are proto3 strings: protobuf itself refuses invalid UTF-8
      // while parsing, before the service sees the call, and gRPC answers
      // UNIMPLEMENTED. Valid UTF-8 reaches validation.
      {"invalid_utf8_header_name",
       "GET",
       "{U}/echo",
       {{"X-\xff", "1"}},
       0,
       C::UNIMPLEMENTED},
      {"invalid_utf8_header_value",
       "GET",
       "{U}/echo",
       {{"X-A", "\xff\xfe"}},
       0,
       C::UNIMPLEMENTED},
      {"utf8_header_name",
       "GET",
       "{U}/echo",
       {{"X-caf\xc3\xa9", "1"}},
       0,
       kBad},
      {"utf8_in_header_value_is_data",
       "GET",
       "{U}/echo",
       {{"X-A", "caf\xc3\xa9"}},
       0,
       C::OK},
      {"invalid_utf8_in_url", "GET", "{U}/\xff\xfe", {}, 0, C::UNIMPLEMENTED},
      {"utf8_in_url", "GET", "{U}/caf\xc3\xa9", {}, 0, kBad},
      {"utf8_in_host", "GET", "http://ex\xc3\xa4mple.com/", {}, 0, kBad},
      // Odd URLs.
      {"no_host", "GET", "http://", {}, 0, kBad},
      {"no_host_with_port", "GET", "http://:80/", {}, 0, kBad},
      {"empty_port", "GET", "http://127.0.0.1:/", {}, 0, kBad},
      {"port_zero", "GET", "http://127.0.0.1:0/", {}, 0, kBad},
      {"port_too_big", "GET", "http://127.0.0.1:65536/", {}, 0, kBad},
      {"negative_port", "GET", "http://127.0.0.1:-1/", {}, 0, kBad},
      {"port_with_letters", "GET", "http://127.0.0.1:8o/", {}, 0, kBad},
      {"userinfo", "GET", "http://user:pass@127.0.0.1/", {}, 0, kBad},
      {"at_sign_confusion",
       "GET",
       "http://evil.example@127.0.0.1/",
       {},
       0,
       kBad},
      {"fragment_at_sign", "GET", "{U}#@evil.example/", {}, 0, C::OK},
      {"backslash_confusion",
       "GET",
       "http://evil.example\\@127.0.0.1/",
       {},
       0,
       kBad},
      {"javascript_scheme", "GET", "javascript:alert(1)", {}, 0, kBad},
      {"file_scheme", "GET", "file:///etc/passwd", {}, 0, kBad},
      {"gopher_scheme", "GET", "gopher://127.0.0.1:25/_HELO", {}, 0, kBad},
      {"uppercase_scheme", "GET", "HTTP://127.0.0.1:{P}/echo", {}, 0, C::OK},
      {"unclosed_ipv6", "GET", "http://[::1/", {}, 0, kBad},
      {"bad_ipv6", "GET", "http://[::g]/", {}, 0, kBad},
      {"ipv6_zone", "GET", "http://[fe80::1%25eth0]/", {}, 0, kBad},
      {"empty_label", "GET", "http://a..b/", {}, 0, kBad},
      {"leading_space", "GET", " {U}/echo", {}, 0, kBad},
      {"tab_in_url", "GET", "{U}/echo\t", {}, 0, kBad},
      {"unknown_name",
       "GET",
       "http://nonexistent.invalid/",
       {},
       0,
       C::UNAVAILABLE},
      // SSRF to the metadata endpoint and private ranges (not allowed here).
      {"metadata",
       "GET",
       "http://169.254.169.254/latest/meta-data/",
       {},
       0,
       C::PERMISSION_DENIED},
      {"metadata_decimal",
       "GET",
       "http://2852039166/",
       {},
       0,
       C::PERMISSION_DENIED},
      {"private_10", "GET", "http://10.0.0.1/", {}, 0, C::PERMISSION_DENIED},
      {"private_mapped_v6",
       "GET",
       "http://[::ffff:192.168.0.1]/",
       {},
       0,
       C::PERMISSION_DENIED},
      {"nat64_metadata",
       "GET",
       "http://[64:ff9b::a9fe:a9fe]/",
       {},
       0,
       C::PERMISSION_DENIED},
      {"zero_address",
       "GET",
       "http://0.0.0.0:{P}/",
       {},
       0,
       C::PERMISSION_DENIED},
      {"zero_shorthand", "GET", "http://0:{P}/", {}, 0, C::PERMISSION_DENIED},
  };
  return v;
}

TEST_F(SecurityIntegrationTest,
       HostileRequestsGetTheirExactCodeAndServiceSurvives) {
  egress_.Start(nullptr, &resolver_);
  const std::string base = upstream_.Url("");
  std::vector<Hostile> cases = HostileRequests();
  ASSERT_GE(cases.size(), 60u);
  for (Hostile& h : cases) {
    for (const auto& [from, to] :
         {std::pair<std::string, std::string>{"{U}", base}, {"{P}", Port()}}) {
      for (size_t at; (at = h.url.find(from)) != std::string::npos;) {
        h.url.replace(at, from.size(), to);
      }
    }
    DoRequest request = MakeRequest(h.method, h.url);
    for (const auto& [name, value] : h.headers) {
      auto* header = request.add_headers();
      header->set_name(name);
      header->set_value(value);
    }
    request.set_body(std::string(h.body_bytes, 'b'));
    DoResponse response;
    grpc::Status status = egress_.Do(request, &response);
    EXPECT_EQ(status.error_code(), h.code)
        << h.name << ": " << status.error_message();
    if (status.error_code() != grpc::StatusCode::OK &&
        status.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
      EXPECT_FALSE(status.error_message().empty()) << h.name;
    }
  }
  // Still serving, and healthy.
  DoResponse response;
  grpc::Status status =
      egress_.Do(MakeRequest("GET", upstream_.Url("/echo")), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), 200);
  EXPECT_GE(
      egress_.Metric("egress_requests_total{code_class=\"none\",method=\"GET\","
                     "outcome=\"INVALID_ARGUMENT\"}"),
      40);
}

}  // namespace
}  // namespace egress
