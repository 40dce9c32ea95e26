// DestinationPolicy: the classification of every non-public range, CIDR and
// host rules, and IPv6 forms that embed IPv4. Pure decisions: nothing connects.
#include "service/destination_policy.h"

#include <string>
#include <vector>

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
  EXPECT_TRUE(policy->CheckHost("www.example.com", nullptr).ok());
  EXPECT_TRUE(policy->CheckHost("api.test", nullptr).ok());
  absl::Status denied = policy->CheckHost("secret.example.com", nullptr);
  EXPECT_EQ(PolicyReason(denied), "deny_hosts");
  EXPECT_THAT(std::string(denied.message()), HasSubstr("secret.example.com"));
  denied = policy->CheckHost("other.org", nullptr);
  EXPECT_EQ(PolicyReason(denied), "allow_hosts");
  EXPECT_THAT(std::string(denied.message()), HasSubstr("not in --allow_hosts"));
}

TEST(DestinationPolicyTest, CallersOwnAllowList) {
  auto policy = Policy();
  const std::vector<std::string> mine = {"api.partner.com",
                                         "*.internal.example"};
  EXPECT_TRUE(policy->CheckHost("api.partner.com", &mine).ok());
  EXPECT_TRUE(policy->CheckHost("x.internal.example", &mine).ok());
  EXPECT_EQ(PolicyReason(policy->CheckHost("evil.com", &mine)), "identity");
  EXPECT_TRUE(policy->CheckHost("evil.com", nullptr).ok());
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
