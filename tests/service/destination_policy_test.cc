// DestinationPolicy: the classification of every non-public range, CIDR and
// host rules, and IPv6 forms that embed IPv4. Pure decisions: nothing connects.
#include "service/policy/destination_policy.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace egress {
namespace {

// The rule's label, or "" for a status without one.
std::string PolicyReason(const absl::Status& status) {
  std::optional<PolicyRule> rule = PolicyRuleOf(status);
  return rule ? PolicyRuleName(*rule) : "";
}

using ::testing::HasSubstr;

std::unique_ptr<DestinationPolicy> Policy(
    const std::string& allow = "", const std::string& deny = "",
    std::vector<std::string> allow_hosts = {},
    std::vector<std::string> deny_hosts = {}) {
  PolicyOptions options;
  options.allow_cidrs = *ParseCidrList(allow, "allow_cidrs");
  options.deny_cidrs = *ParseCidrList(deny, "deny_cidrs");
  options.allow_hosts = std::move(allow_hosts);
  options.deny_hosts = std::move(deny_hosts);
  return *DestinationPolicy::Create(std::move(options));
}

struct AddressCase {
  const char* address;
  const char* reason;  // nullptr: allowed
};

class ClassificationTest : public ::testing::TestWithParam<AddressCase> {};

TEST_P(ClassificationTest, RefusesExactlyTheNonPublicRanges) {
  const AddressCase& c = GetParam();
  absl::Status status = Policy()->CheckAddress(c.address);
  if (c.reason == nullptr) {
    EXPECT_TRUE(status.ok()) << c.address << ": " << status;
  } else {
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << c.address;
    EXPECT_EQ(PolicyReason(status), c.reason) << c.address << ": " << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("refused by policy"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Addresses, ClassificationTest,
    ::testing::Values(
        // Public.
        AddressCase{"93.184.216.34", nullptr}, AddressCase{"8.8.8.8", nullptr},
        AddressCase{"1.1.1.1", nullptr},
        AddressCase{"2606:4700::1111", nullptr},
        AddressCase{"172.32.0.1", nullptr}, AddressCase{"100.128.0.1", nullptr},
        AddressCase{"192.169.0.1", nullptr},
        AddressCase{"2002:5db8:d822::1", nullptr},
        // IPv4 special ranges.
        AddressCase{"127.0.0.1", "loopback"},
        AddressCase{"127.255.255.254", "loopback"},
        AddressCase{"10.0.0.1", "private"},
        AddressCase{"10.255.255.255", "private"},
        AddressCase{"172.16.0.1", "private"},
        AddressCase{"172.31.255.1", "private"},
        AddressCase{"192.168.1.1", "private"},
        AddressCase{"169.254.169.254", "link_local"},  // cloud metadata
        AddressCase{"169.254.0.1", "link_local"},
        AddressCase{"100.64.0.1", "cgnat"},
        AddressCase{"100.127.255.254", "cgnat"},
        AddressCase{"0.0.0.0", "unspecified"},
        AddressCase{"0.1.2.3", "unspecified"},
        AddressCase{"224.0.0.1", "multicast"},
        AddressCase{"239.255.255.250", "multicast"},
        AddressCase{"255.255.255.255", "broadcast"},
        AddressCase{"240.0.0.1", "reserved"},
        AddressCase{"192.0.2.10", "reserved"},
        AddressCase{"198.51.100.7", "reserved"},
        AddressCase{"203.0.113.9", "reserved"},
        AddressCase{"198.18.0.1", "reserved"},
        AddressCase{"192.0.0.170", "reserved"},
        // IPv6.
        AddressCase{"::1", "loopback"}, AddressCase{"::", "unspecified"},
        AddressCase{"fe80::1", "link_local"},
        AddressCase{"fd00::1", "unique_local"},
        AddressCase{"fc12:3456::1", "unique_local"},
        AddressCase{"ff02::1", "multicast"},
        AddressCase{"2001:db8::1", "reserved"},
        AddressCase{"fec0::1", "reserved"}, AddressCase{"100::1", "reserved"},
        // IPv6 forms that embed IPv4.
        AddressCase{"::ffff:127.0.0.1", "loopback"},
        AddressCase{"::ffff:169.254.169.254", "link_local"},
        AddressCase{"::ffff:10.1.2.3", "private"},
        AddressCase{"::ffff:8.8.8.8", nullptr},
        AddressCase{"64:ff9b::7f00:1", "loopback"},       // NAT64 of 127.0.0.1
        AddressCase{"64:ff9b::a9fe:a9fe", "link_local"},  // NAT64 of metadata
        AddressCase{"64:ff9b::808:808", nullptr},         // NAT64 of 8.8.8.8
        AddressCase{"2002:7f00:1::1", "loopback"},        // 6to4 of 127.0.0.1
        AddressCase{"2002:c0a8:101::1", "private"},       // 6to4 of 192.168.1.1
        AddressCase{"2001:0:4136:e378:8000:63bf:f7f7:f7f7",
                    nullptr},  // Teredo, 8.8.8.8
        AddressCase{"2001:0:4136:e378:8000:63bf:3fff:fdd2",
                    "reserved"},  // 192.0.2.45
        AddressCase{"2001:0:4136:e378:8000:63bf:80ff:fffe",
                    "loopback"},                   // client 127.0.0.1
        AddressCase{"2001:0:a00:1::", "private"},  // Teredo server 10.0.0.1
        AddressCase{"::127.0.0.1", "loopback"},  // IPv4-compatible (deprecated)
        AddressCase{"::10.0.0.1", "private"}));

TEST(DestinationPolicyTest, AllowCidrsOpensARangeAndDenyWins) {
  auto policy = Policy("127.0.0.0/8,::1/128,10.1.0.0/16", "10.1.2.0/24");
  EXPECT_TRUE(policy->CheckAddress("127.0.0.1").ok());
  EXPECT_TRUE(policy->CheckAddress("::1").ok());
  EXPECT_TRUE(
      policy->CheckAddress("::ffff:127.0.0.1").ok());  // the same address
  EXPECT_TRUE(policy->CheckAddress("10.1.9.9").ok());
  absl::Status denied = policy->CheckAddress("10.1.2.3");
  EXPECT_EQ(PolicyReason(denied), "deny_cidrs");
  EXPECT_THAT(
      std::string(denied.message()),
      HasSubstr("connect to 10.1.2.3 refused by policy: in --deny_cidrs"));
  EXPECT_EQ(PolicyReason(policy->CheckAddress("10.2.0.1")), "private");
}

TEST(DestinationPolicyTest, DenyCidrsReachesPublicAndEmbeddedAddresses) {
  auto policy = Policy("", "8.8.8.0/24");
  EXPECT_EQ(PolicyReason(policy->CheckAddress("8.8.8.8")), "deny_cidrs");
  absl::Status nat64 = policy->CheckAddress("64:ff9b::808:808");
  EXPECT_EQ(PolicyReason(nat64), "deny_cidrs");
  EXPECT_THAT(std::string(nat64.message()), HasSubstr("embeds 8.8.8.8"));
}

TEST(DestinationPolicyTest, MessageNamesTheAddressAndTheRule) {
  absl::Status status = Policy()->CheckAddress("169.254.169.254");
  EXPECT_THAT(
      std::string(status.message()),
      HasSubstr("connect to 169.254.169.254 refused by policy: link-local"));
  status = Policy()->CheckAddress("10.0.0.1");
  EXPECT_THAT(
      std::string(status.message()),
      HasSubstr("connect to 10.0.0.1 refused by policy: private address"));
}

TEST(DestinationPolicyTest, CidrListErrorsNameTheFlagAndEntry) {
  auto bad = ParseCidrList("10.0.0.0/8, 300.1.1.1/8", "allow_cidrs");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("--allow_cidrs: \"300.1.1.1/8\" is not an IP address"));
  bad = ParseCidrList("10.0.0.0/33", "deny_cidrs");
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("outside 0-32"));
  bad = ParseCidrList("::/129", "deny_cidrs");
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("outside 0-128"));
  EXPECT_TRUE(ParseCidrList(" 1.2.3.4 ,::1/128,", "x").ok());
}

TEST(DestinationPolicyTest, HostPatterns) {
  EXPECT_TRUE(HostMatches("api.example.com", "*.example.com"));
  EXPECT_TRUE(HostMatches("a.b.example.com", "*.example.com"));
  EXPECT_FALSE(HostMatches("example.com", "*.example.com"));
  EXPECT_FALSE(HostMatches("badexample.com", "*.example.com"));
  EXPECT_TRUE(HostMatches("example.com", "example.com"));
  EXPECT_FALSE(HostMatches("www.example.com", "example.com"));
}

TEST(DestinationPolicyTest, DenyHostsWinsOverAllowHosts) {
  auto policy =
      Policy("", "", {"*.example.com", "api.test"}, {"secret.example.com"});
  EXPECT_TRUE(policy->CheckDestination("www.example.com", 443, nullptr).ok());
  EXPECT_TRUE(policy->CheckDestination("api.test", 443, nullptr).ok());
  absl::Status denied =
      policy->CheckDestination("secret.example.com", 443, nullptr);
  EXPECT_EQ(PolicyReason(denied), "deny_hosts");
  EXPECT_THAT(std::string(denied.message()), HasSubstr("secret.example.com"));
  denied = policy->CheckDestination("other.org", 443, nullptr);
  EXPECT_EQ(PolicyReason(denied), "allow_hosts");
  EXPECT_THAT(std::string(denied.message()), HasSubstr("not in --allow_hosts"));
}

TEST(DestinationPolicyTest, CallersOwnAllowList) {
  auto policy = Policy();
  CallerRules mine;
  mine.hosts = {"api.partner.com", "*.internal.example"};
  EXPECT_TRUE(policy->CheckDestination("api.partner.com", 443, &mine).ok());
  EXPECT_TRUE(policy->CheckDestination("x.internal.example", 80, &mine).ok());
  EXPECT_EQ(PolicyReason(policy->CheckDestination("evil.com", 443, &mine)),
            "identity");
  EXPECT_TRUE(policy->CheckDestination("evil.com", 443, nullptr).ok());
}

// Cross-protocol relays: SMTP, Redis and memcached on a public host are
// refused by the default --allow_ports (80,443), naming the port.
TEST(DestinationPolicyTest, OnlyAllowedPortsAreReachable) {
  auto policy = Policy();
  for (int port : {25, 6379, 11211, 22, 8080, 0, 65535}) {
    absl::Status status =
        policy->CheckDestination("mail.example.com", port, nullptr);
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << port;
    EXPECT_EQ(PolicyReason(status), "port") << port;
    EXPECT_THAT(std::string(status.message()),
                HasSubstr(absl::StrCat("port ", port,
                                       " refused by policy: not in "
                                       "--allow_ports (80,443)")));
  }
  EXPECT_TRUE(policy->CheckDestination("example.com", 80, nullptr).ok());
  EXPECT_TRUE(policy->CheckDestination("example.com", 443, nullptr).ok());

  PolicyOptions options;
  options.allow_ports = *PortSet::Parse("443, 8443");
  auto custom = *DestinationPolicy::Create(options);
  EXPECT_TRUE(custom->CheckDestination("example.com", 8443, nullptr).ok());
  EXPECT_EQ(PolicyReason(custom->CheckDestination("example.com", 80, nullptr)),
            "port");
  options.allow_ports = *PortSet::Parse("*");
  auto any = *DestinationPolicy::Create(options);
  EXPECT_TRUE(any->CheckDestination("example.com", 6379, nullptr).ok());
}

TEST(DestinationPolicyTest, CallersOwnPortsReplaceAllowPorts) {
  auto policy = Policy();
  CallerRules redis;
  redis.hosts = {"cache.example.com"};
  redis.ports = *PortSet::Parse("6379");
  redis.source = "ids.txt:3";
  EXPECT_TRUE(policy->CheckDestination("cache.example.com", 6379, &redis).ok());
  absl::Status status =
      policy->CheckDestination("cache.example.com", 443, &redis);
  EXPECT_EQ(PolicyReason(status), "port");
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("port 443 refused by policy: not in the caller's "
                        "ports (ids.txt:3) (6379)"));
  // Hosts are still checked first: another host on 6379 is refused.
  EXPECT_EQ(PolicyReason(policy->CheckDestination("other.com", 6379, &redis)),
            "identity");
}

TEST(DestinationPolicyTest, PortLists) {
  EXPECT_EQ(PortSet::Parse("443,80,443")->ToString(), "80,443");
  EXPECT_EQ(PortSet::Parse(" * ")->ToString(), "*");
  for (const char* bad :
       {"", "0", "65536", "80,", "http", "80,*", "-1", "80 443", "1e3"}) {
    absl::StatusOr<PortSet> set = PortSet::Parse(bad);
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(DestinationPolicyTest, HostPatternsAreValidatedAndNormalized) {
  EXPECT_EQ(*ParseHostPattern(" API.Example.COM. "), "api.example.com");
  EXPECT_EQ(*ParseHostPattern("*.Example.com"), "*.example.com");
  EXPECT_EQ(*ParseHostPattern("*"), "*");
  EXPECT_EQ(*ParseHostPattern("10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(*ParseHostPattern("[2001:DB8::1]"), "2001:db8::1");
  EXPECT_EQ(*ParseHostPattern("2001:db8:0:0::1"), "2001:db8::1");
  EXPECT_EQ(*ParseHostPattern("::FFFF:a00:1"), "::ffff:10.0.0.1");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"*example.com", "whole first label"},
      {"a*.example.com", "whole first label"},
      {"api.*.com", "whole first label"},
      {"*.*.com", "whole first label"},
      {"**", "whole first label"},
      {"*.", "empty label"},
      {"a..b", "empty label"},
      {"", "is empty"},
      {"api.example.com:443", "not an IPv6 address (ports go in"},
      {"https://api.example.com", "a URL?"},
      {"api example", "character \" \""},
      {"[::1", "unclosed"},
      {std::string("::\0x", 4), "not an IPv6 address"},
      {"010.1.2.3", "dotted-decimal"},
      {"0x7f.0.0.1", "dotted-decimal"},
      {"10.1", "dotted-decimal"},
      {"*.1.2.3", "dotted-decimal"},
      {std::string(64, 'a') + ".com", "longer than 63"},
  };
  for (const auto& [pattern, why] : bad) {
    absl::StatusOr<std::string> parsed = ParseHostPattern(pattern);
    ASSERT_FALSE(parsed.ok()) << pattern;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(why))
        << pattern;
  }
  // "*" as its own entry is every host; "*.example.com" never example.com.
  EXPECT_TRUE(HostMatches("anything.test", "*"));
  EXPECT_FALSE(HostMatches("evilexample.com", "*.example.com"));
}

TEST(DestinationPolicyTest, ExplainNamesEveryRuleConsulted) {
  auto policy = Policy("", "", {"*.example.com"}, {"secret.example.com"});
  std::vector<std::string> lines;
  EXPECT_EQ(PolicyReason(policy->CheckDestination("mail.example.com", 25,
                                                  nullptr, &lines)),
            "port");
  EXPECT_THAT(lines, ::testing::ElementsAre(
                         "--deny_hosts: no entry matches",
                         "--allow_hosts: \"*.example.com\" matches",
                         "caller's own hosts: none configured",
                         "port 25: not in --allow_ports (80,443): REFUSED"));
  lines.clear();
  EXPECT_EQ(PolicyReason(policy->CheckAddress("10.1.2.3", &lines)), "private");
  EXPECT_THAT(lines, ::testing::ElementsAre(
                         "address 10.1.2.3: private address (RFC 1918): "
                         "REFUSED"));
}

TEST(DestinationPolicyTest, MalformedHostPatternsAreRefused) {
  PolicyOptions options;
  options.deny_hosts = {"a*b.com"};
  auto policy = DestinationPolicy::Create(options);
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(policy.status().message()),
              HasSubstr("--deny_hosts"));
  options.deny_hosts = {"*."};
  EXPECT_FALSE(DestinationPolicy::Create(options).ok());
}

}  // namespace
}  // namespace egress
