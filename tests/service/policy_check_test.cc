// --policy_check's explanation: every rule consulted, in the order a call
// meets them, and the verdict; DNS answered by a FakeResolver.
#include "service/server/policy_check.h"

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_resolver.h"

namespace egress {
namespace {

using ::testing::HasSubstr;

std::string Write(const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream(path) << text;
  return path;
}

TEST(PolicyCheckTest, RefusedPortIsExplainedBeforeAnyLookup) {
  Config config;
  FakeResolver resolver;
  absl::StatusOr<PolicyReport> report = ExplainPolicy(
      config, "anonymous", "http://mail.example.com:25/", resolver);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->allowed);
  EXPECT_EQ(report->text,
            "caller: anonymous\n"
            "url: http://mail.example.com:25/\n"
            "--deny_hosts: empty\n"
            "--allow_hosts: empty, every host allowed\n"
            "caller's own hosts: none configured\n"
            "port 25: not in --allow_ports (80,443): REFUSED\n"
            "verdict: REFUSED (PERMISSION_DENIED): port 25 refused by policy: "
            "not in --allow_ports (80,443)\n");
  EXPECT_EQ(resolver.calls(), 0);
}

// A proxied origin: the proxy resolves the host, so no address is looked up
// or checked, and what the entry injects is named but never shown.
TEST(PolicyCheckTest, AProxiedOriginNamesItsProxyAndRedactsItsSecrets) {
  Config config;
  config.config_file = "egressd.textproto";
  egress::config::v1::OriginEntry entry;
  entry.set_match("*.openai.com");
  entry.mutable_proxy()->set_url("http://squid.corp:3128");
  entry.mutable_proxy()->set_credentials_file(
      Write("proxy-pass", "egress:proxy-secret-value\n"));
  auto* header = entry.add_inject_headers();
  header->set_name("authorization");
  header->set_value_file(Write("openai-key", "Bearer sk-secret-value\n"));
  header->add_callers("billing");
  config.origins.push_back(entry);
  FakeResolver resolver;
  absl::StatusOr<PolicyReport> report = ExplainPolicy(
      config, "search", "https://api.openai.com/v1/models", resolver);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->allowed) << report->text;
  EXPECT_EQ(report->text,
            absl::StrCat(
                "caller: search\n"
                "url: https://api.openai.com/v1/models\n"
                "--deny_hosts: empty\n"
                "--allow_hosts: empty, every host allowed\n"
                "caller's own hosts: none configured\n"
                "port 443: in --allow_ports (80,443)\n"
                "origin entry: origins[0] \"*.openai.com\"\n"
                "injects header authorization: <redacted, from ",
                header->value_file(),
                "> (not for this caller)\n"
                "proxy: http://squid.corp:3128 (credentials: <redacted, from ",
                entry.proxy().credentials_file(),
                ">)\n"
                "addresses: not checked by egress: the proxy resolves "
                "api.openai.com and connects; --allow_cidrs/--deny_cidrs and "
                "the private-range rules apply to direct connections and to "
                "addresses given as the host only (docs/security.md)\n"
                "verdict: ALLOWED\n"));
  EXPECT_EQ(resolver.calls(), 0);
}

TEST(PolicyCheckTest, IdentityRulesAndEveryAddressAreShown) {
  Config config;
  config.identity_hosts_file = Write(
      "ids-check.txt",
      "spiffe://cluster.local/ns/shop/sa/cart api.example.com ports=8443\n");
  FakeResolver resolver;
  resolver.Set("api.example.com",
               std::vector<std::string>{"10.0.0.7", "93.184.215.14"});
  absl::StatusOr<PolicyReport> report =
      ExplainPolicy(config, "spiffe://cluster.local/ns/shop/sa/cart",
                    "https://api.example.com:8443/v1", resolver);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->allowed) << report->text;
  EXPECT_THAT(report->text, HasSubstr(absl::StrCat(
                                "caller's hosts (", config.identity_hosts_file,
                                ":1): \"api.example.com\" matches\n"
                                "port 8443: in the caller's ports (",
                                config.identity_hosts_file,
                                ":1) (8443)\n"
                                "dns: api.example.com is 10.0.0.7, "
                                "93.184.215.14\n"
                                "address 10.0.0.7: private address (RFC "
                                "1918): REFUSED\n"
                                "address 93.184.215.14: public\n"
                                "verdict: ALLOWED\n")));

  // The same caller elsewhere; another caller on 8443.
  report = ExplainPolicy(config, "spiffe://cluster.local/ns/shop/sa/cart",
                         "https://evil.example.net:8443/", resolver);
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->allowed);
  EXPECT_THAT(report->text,
              HasSubstr("verdict: REFUSED (PERMISSION_DENIED): host "
                        "evil.example.net refused by policy: not among the "
                        "hosts this caller may reach"));
  report = ExplainPolicy(config, "anonymous", "https://api.example.com:8443/",
                         resolver);
  ASSERT_TRUE(report.ok());
  EXPECT_THAT(report->text, HasSubstr("port 8443: not in --allow_ports"));
}

TEST(PolicyCheckTest, UnresolvableAndMalformedAreRefusalsNotErrors) {
  Config config;
  FakeResolver resolver;
  absl::StatusOr<PolicyReport> report =
      ExplainPolicy(config, "anonymous", "http://nowhere.test/", resolver);
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->allowed);
  EXPECT_THAT(report->text, HasSubstr("dns: "));
  report = ExplainPolicy(config, "anonymous", "ftp://x/", resolver);
  ASSERT_TRUE(report.ok());
  EXPECT_THAT(report->text, HasSubstr("verdict: REFUSED (INVALID_ARGUMENT)"));
  report = ExplainPolicy(config, "anonymous", "http://[::1]/", resolver);
  ASSERT_TRUE(report.ok());
  EXPECT_THAT(report->text, HasSubstr("address ::1: loopback address: REFUSED\n"
                                      "verdict: REFUSED (PERMISSION_DENIED)"));
}

TEST(PolicyCheckTest, InvalidPolicyIsAnError) {
  Config config;
  config.deny_hosts = "*bad.com";
  FakeResolver resolver;
  absl::StatusOr<PolicyReport> report =
      ExplainPolicy(config, "anonymous", "http://x.com/", resolver);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("--deny_hosts: \"*bad.com\""));
}

}  // namespace
}  // namespace egress
