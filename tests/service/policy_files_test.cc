// Policy files: the identity file's grammar, every malformed line refused
// with its file and line, identities (names and SPIFFE IDs) validated.
#include "service/policy/policy_files.h"

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace egress {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(PolicyFilesTest, ParsesHostsPortsAndSpiffeIds) {
  absl::StatusOr<IdentityRuleMap> rules = ParseIdentityFile(
      "# callers\n"
      "billing  API.Stripe.com,*.stripe.com   # payments\n"
      "\n"
      "spiffe://cluster.local/ns/shop/sa/"
      "cart\tapi.example.com\tports=8443,443\n"
      "ops * max_inflight=20 ports=*\n",
      "ids.txt");
  ASSERT_TRUE(rules.ok()) << rules.status();
  ASSERT_EQ(rules->size(), 3u);
  const CallerRules& billing = *rules->at("billing");
  EXPECT_THAT(billing.hosts, ElementsAre("api.stripe.com", "*.stripe.com"));
  EXPECT_FALSE(billing.ports.has_value());
  EXPECT_EQ(billing.source, "ids.txt:2");
  const CallerRules& cart =
      *rules->at("spiffe://cluster.local/ns/shop/sa/cart");
  EXPECT_EQ(cart.ports->ToString(), "443,8443");
  EXPECT_EQ(cart.source, "ids.txt:4");
  EXPECT_THAT(rules->at("ops")->hosts, ElementsAre("*"));
  EXPECT_EQ(rules->at("ops")->ports->ToString(), "*");
  EXPECT_EQ(rules->at("ops")->max_inflight, 20u);
  EXPECT_FALSE(billing.max_inflight.has_value());
}

TEST(PolicyFilesTest, EveryMalformedLineIsAnErrorNamingFileAndLine) {
  struct Case {
    std::string text;
    std::string words;
  };
  const std::vector<Case> cases = {
      {"billing *example.com\n", "ids.txt:1: \"*example.com\" uses \"*\""},
      {"billing\n", "ids.txt:1: expected \"IDENTITY host[,host...]"},
      {"billing a.com b.com\n", "unknown option \"b.com\""},
      {"billing a.com ports=443 ports=80\n", "ports= twice"},
      {"billing a.com max_inflight=many\n", "max_inflight=many: expected"},
      {"billing a.com max_inflight=-1\n", "max_inflight=-1: expected"},
      {"billing a.com max_inflight=1 max_inflight=2\n", "max_inflight= twice"},
      {"billing a.com ports=443 max_inflight=1 extra\n", "expected"},
      {"billing a.com ports=\n", "ports= is empty"},
      {"billing a.com ports=25,*\n", "must be written alone"},
      {"billing a.com ports=http\n", "not a port number"},
      {"billing a.com,,b.com\n", "empty host entry"},
      {"billing a.com,\n", "empty host entry"},
      {"billing a.com:443\n", "ports go in"},
      {"billing https://a.com/\n", "a URL?"},
      {"# first\nbilling a.com\nbilling b.com\n",
       "ids.txt:3: identity billing already has a line (2)"},
      {"bill/ing a.com\n", "has a character other than"},
      {"spiffe://Cluster.local/ns/a a.com\n", "trust domain allows only"},
      {"spiffe:///ns/a a.com\n", "no trust domain"},
      {"spiffe://cluster.local/ns//a a.com\n", "empty path segment"},
      {"spiffe://cluster.local/ns/../a a.com\n", "\"..\" segment"},
      {"SPIFFE://cluster.local/ns/a a.com\n", "scheme is lower-case"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<IdentityRuleMap> rules =
        ParseIdentityFile(c.text, "ids.txt");
    ASSERT_FALSE(rules.ok()) << c.text;
    EXPECT_EQ(rules.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(rules.status().message()), HasSubstr(c.words))
        << c.text;
  }
}

TEST(PolicyFilesTest, IdentitiesAreNamesOrSpiffeIds) {
  for (const char* good :
       {"billing", "svc-a.prod", "erin@example.com", "team:payments",
        "spiffe://cluster.local/ns/default/sa/web", "spiffe://example.org"}) {
    EXPECT_TRUE(ValidateIdentity(good).ok()) << good;
  }
  for (const char* bad :
       {"", "a b", "a#b", "caf\xc3\xa9", "x\ty",
        "spiffe://cluster.local/ns/a?x=1", "spiffe://cluster.local/"}) {
    EXPECT_FALSE(ValidateIdentity(bad).ok()) << bad;
  }
}

TEST(PolicyFilesTest, CommentsAndBlankLinesAreSkipped) {
  std::vector<int> lines;
  absl::Status status = ForEachEntry(
      "# a\n\n   \nx y # z\n\t# b\nw\n", "f",
      [&](const std::vector<absl::string_view>& fields, int line) {
        lines.push_back(line);
        return fields.empty() ? absl::InternalError("empty") : absl::OkStatus();
      });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_THAT(lines, ElementsAre(4, 6));
}

// A file a flag names: read whole; a missing file or a directory is an error
// naming the flag (a directory read as empty would limit nobody).
TEST(PolicyFilesTest, ReadFlagFileRefusesWhatIsNotAFile) {
  const std::string dir = ::testing::TempDir();
  const std::string empty = dir + "/empty-flag-file";
  std::ofstream(empty).close();
  absl::StatusOr<std::string> text = ReadFlagFile(empty, "identity_hosts_file");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "");
  const std::string some = dir + "/some-flag-file";
  std::ofstream(some) << std::string(100000, 'x');
  EXPECT_EQ(ReadFlagFile(some, "f")->size(), 100000u);
  for (const std::string& bad : {dir, dir + "/no-such-file"}) {
    text = ReadFlagFile(bad, "identity_hosts_file");
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(text.status().message()),
                HasSubstr("--identity_hosts_file: cannot read " + bad))
        << bad;
  }
}

}  // namespace
}  // namespace egress
