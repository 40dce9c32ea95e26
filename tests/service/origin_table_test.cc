// OriginTable: matching (first entry wins, exact origins, host patterns, the
// default), what each entry sets, and a bad entry refused with an error that
// names the file, the entry and the field. SecretFile: re-read on change.
#include "service/admission/origin_table.h"

#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "service/base/url.h"
#include "tests/fakes/test_certs.h"

namespace egress {
namespace {

using egress::config::v1::OriginEntry;
using ::testing::HasSubstr;

std::string Dir() { return ::testing::TempDir(); }

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = Dir() + "/" + name;
  std::ofstream(path, std::ios::trunc) << text;
  return path;
}

std::vector<OriginEntry> Entries(const std::vector<std::string>& texts) {
  std::vector<OriginEntry> out;
  for (const std::string& text : texts) {
    OriginEntry entry;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &entry))
        << text;
    out.push_back(entry);
  }
  return out;
}

Origin O(const std::string& text) { return *ParseOrigin(text); }

absl::StatusOr<std::shared_ptr<const OriginTable>> Build(
    const std::vector<std::string>& texts) {
  return OriginTable::Build(Entries(texts), SessionOptions{}, "egress.conf");
}

TEST(OriginTableTest, TheFirstMatchingEntryWinsAndTheRestGetTheDefault) {
  const std::string key = WriteFile("key", "k1\n");
  auto table = Build({
      R"(match: "https://api.openai.com" max_inflight: 7)",
      R"(match: "*.example.com" max_inflight: 8)",
      R"(match: "api.openai.com" max_inflight: 9)",
  });
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ((*table)->Route(O("https://api.openai.com")).max_inflight, 7u);
  // The exact origin is scheme and port too: http is another origin.
  EXPECT_EQ((*table)->Route(O("http://api.openai.com")).max_inflight, 9u);
  EXPECT_EQ((*table)->Route(O("https://a.example.com:8443")).max_inflight, 8u);
  // "*.example.com" is a proper subdomain, as in the policy.
  const OriginRoute& other = (*table)->Route(O("https://example.com"));
  EXPECT_EQ(other.entry, "default");
  EXPECT_FALSE(other.max_inflight.has_value());
  EXPECT_FALSE(other.own_sessions);
}

TEST(OriginTableTest, AnEntrysRateLimitIsParsed) {
  auto table = Build({
      R"(match: "https://api.openai.com"
         rate_limit { rate: "6000/min" burst: 20 max_wait { seconds: 2 } })",
      R"(match: "*.example.com" rate_limit { rate: "5/s" })",
  });
  ASSERT_TRUE(table.ok()) << table.status();
  const OriginRoute& openai = (*table)->Route(O("https://api.openai.com"));
  ASSERT_TRUE(openai.rate_limit.has_value());
  EXPECT_EQ(*openai.rate_limit, (RateLimit{100, 20}));
  EXPECT_EQ(openai.rate_max_wait, std::chrono::seconds(2));
  const OriginRoute& example = (*table)->Route(O("https://a.example.com"));
  EXPECT_EQ(*example.rate_limit, (RateLimit{5, 5}));  // a second's worth
  EXPECT_FALSE(example.rate_max_wait.has_value());    // the flag's
  EXPECT_FALSE((*table)->Route(O("https://other.org")).rate_limit.has_value());
}

TEST(OriginTableTest, AStarEntryIsTheDefaultForEveryOtherOrigin) {
  auto table = Build({R"(match: "a.test" max_inflight: 1)",
                      R"(match: "*" ejection { consecutive_5xx: 4 })"});
  ASSERT_TRUE(table.ok()) << table.status();
  const OriginRoute& route = (*table)->Route(O("http://b.test"));
  EXPECT_EQ(route.entry, "origins[1] \"*\"");
  EXPECT_EQ(route.ejection.consecutive_5xx, 4);
  EXPECT_EQ(route.ejection.consecutive_failures, defaults::kEjectAfterFailures);
}

TEST(OriginTableTest, SessionsOfDifferentSettingsArePooledApart) {
  TestCa ca(Dir());
  CertFiles one = ca.Issue({"client-one", {"client-one"}, {}});
  CertFiles two = ca.Issue({"client-two", {"client-two"}, {}});
  auto table = Build({
      "match: \"https://a.test\" client_cert: \"" + one.cert +
          "\" client_key: \"" + one.key + "\"",
      "match: \"https://b.test\" client_cert: \"" + two.cert +
          "\" client_key: \"" + two.key + "\"",
      R"(match: "https://c.test" sni: "c-internal.test" tls_min_version: "1.3")",
      R"(match: "https://d.test" max_inflight: 3)",
  });
  ASSERT_TRUE(table.ok()) << table.status();
  const OriginRoute& a = (*table)->Route(O("https://a.test"));
  const OriginRoute& b = (*table)->Route(O("https://b.test"));
  const OriginRoute& c = (*table)->Route(O("https://c.test"));
  const OriginRoute& d = (*table)->Route(O("https://d.test"));
  EXPECT_TRUE(a.own_sessions);
  ASSERT_NE(a.session.client_identity, nullptr);
  EXPECT_NE(a.session.pool_tag, b.session.pool_tag);
  EXPECT_NE(a.session.client_identity->fingerprint(),
            b.session.client_identity->fingerprint());
  EXPECT_EQ(c.session.sni, "c-internal.test");
  EXPECT_EQ(c.session.tls_min_version, TLS1_3_VERSION);
  EXPECT_FALSE(c.session.pool_tag.empty());
  // An in-flight limit is not a session setting: the service-wide sessions.
  EXPECT_FALSE(d.own_sessions);
  EXPECT_TRUE(d.session.pool_tag.empty());
}

TEST(OriginTableTest, ProxiedEntriesReachNoProxyHostsDirectly) {
  const std::string credentials = WriteFile("proxy-credentials", "u:p\n");
  auto table = Build(
      {"match: \"*\" proxy { url: \"http://proxy.corp:3128\" "
       "credentials_file: \"" +
       credentials + "\" no_proxy: \"*.internal\" no_proxy: \"10.0.0.7\" }"});
  ASSERT_TRUE(table.ok()) << table.status();
  const OriginRoute& out = (*table)->Route(O("https://api.stripe.com"));
  ASSERT_NE(out.session.proxy, nullptr);
  EXPECT_EQ(out.session.proxy->url, "http://proxy.corp:3128");
  EXPECT_EQ(out.session.proxy->port, 3128);
  EXPECT_EQ(*out.session.proxy->Authorization(), "Basic dTpw");
  const OriginRoute& in = (*table)->Route(O("http://db.internal"));
  EXPECT_EQ(in.session.proxy, nullptr);
  EXPECT_NE(in.session.pool_tag, out.session.pool_tag);
  EXPECT_EQ((*table)->Route(O("http://10.0.0.7")).session.proxy, nullptr);
}

TEST(OriginTableTest, InjectedHeadersAreForTheNamedCallers) {
  const std::string secret = WriteFile("openai-key", "Bearer sk-one\n");
  auto table =
      Build({"match: \"https://api.openai.com\" inject_headers { "
             "name: \"authorization\" value_file: \"" +
             secret + "\" callers: \"billing\" }"});
  ASSERT_TRUE(table.ok()) << table.status();
  const OriginRoute& route = (*table)->Route(O("https://api.openai.com"));
  ASSERT_EQ(route.inject.size(), 1u);
  EXPECT_TRUE(route.inject[0].AppliesTo("billing"));
  EXPECT_FALSE(route.inject[0].AppliesTo("search"));
  EXPECT_EQ(*route.inject[0].value->Value(), "Bearer sk-one");
}

TEST(OriginTableTest, ARouteKeepsItsTableAliveAfterAReplace) {
  auto first = Build({R"(match: "*" max_inflight: 1)"});
  ASSERT_TRUE(first.ok());
  OriginRoutes routes(*first);
  std::shared_ptr<const OriginRoute> held = routes.RouteFor(O("http://a.test"));
  routes.Replace(*Build({R"(match: "*" max_inflight: 2)"}));
  first->reset();
  EXPECT_EQ(held->max_inflight, 1u);  // the call that started keeps it
  EXPECT_EQ(routes.RouteFor(O("http://a.test"))->max_inflight, 2u);
}

TEST(OriginTableTest, ABadEntryNamesTheFileTheEntryAndTheField) {
  const auto error = [](const std::vector<std::string>& texts) {
    auto table = Build(texts);
    EXPECT_FALSE(table.ok());
    return table.ok() ? std::string() : std::string(table.status().message());
  };
  EXPECT_THAT(error({R"(match: "a.test")", R"(match: "a*.test")"}),
              ::testing::StartsWith("egress.conf: origins[1] \"a*.test\": "
                                    "match: "));
  EXPECT_THAT(error({R"(match: "")"}),
              HasSubstr("origins[0] \"\": match: empty"));
  EXPECT_THAT(error({R"(match: "ftp://a.test")"}), HasSubstr("match: "));
  EXPECT_THAT(error({R"(match: "*" inject_headers { name: "x-key" })"}),
              HasSubstr("inject_headers[0].value_file: empty"));
  EXPECT_THAT(error({R"(match: "*" inject_headers { name: "x-key"
                        value_file: "/nonexistent/key" })"}),
              HasSubstr("inject_headers[0].value_file: cannot read "
                        "/nonexistent/key"));
  EXPECT_THAT(
      error({R"(match: "*" inject_headers { name: "bad name"
                        value_file: "/dev/null" })"}),
      HasSubstr("inject_headers[0].name: \"bad name\" is not a header"));
  EXPECT_THAT(error({R"(match: "*" inject_headers { name: "Host"
                        value_file: "/dev/null" })"}),
              HasSubstr("inject_headers[0].name: Host frames the request"));
  EXPECT_THAT(error({R"(match: "*" client_cert: "/x.pem")"}),
              HasSubstr("client_cert and client_key: give both or neither"));
  EXPECT_THAT(error({R"(match: "*" client_cert: "/nonexistent/c.pem"
                        client_key: "/nonexistent/k.pem")"}),
              HasSubstr("client_cert: cannot load a PEM certificate from "
                        "/nonexistent/c.pem"));
  EXPECT_THAT(error({R"(match: "*" ca_file: "/nonexistent/ca.pem")"}),
              HasSubstr("ca_file: cannot load PEM certificates from "
                        "/nonexistent/ca.pem"));
  EXPECT_THAT(error({R"(match: "*" tls_min_version: "1.1")"}),
              HasSubstr("tls_min_version: \"1.1\" is not \"1.2\" or \"1.3\""));
  EXPECT_THAT(error({R"(match: "*" connect_timeout { seconds: -1 })"}),
              HasSubstr("connect_timeout: must be positive"));
  EXPECT_THAT(error({R"(match: "*" proxy { url: "https://p:3128" })"}),
              HasSubstr("proxy.url: \"https://p:3128\": only http:// proxies"));
  EXPECT_THAT(error({R"(match: "*" proxy { url: "p:3128" })"}),
              HasSubstr("proxy.url: "));
  EXPECT_THAT(error({R"(match: "*" proxy { url: "http://p:3128"
                        no_proxy: "a*" })"}),
              HasSubstr("proxy.no_proxy[0]: "));
  EXPECT_THAT(error({R"(match: "*" ejection { base_time { seconds: 10 }
                  max_time { seconds: 5 } })"}),
              HasSubstr("ejection.max_time: shorter than ejection.base_time"));
  EXPECT_THAT(error({R"(match: "*" rate_limit { rate: "fast" })"}),
              HasSubstr("rate_limit.rate: \"fast\" is not a rate"));
  EXPECT_THAT(error({R"(match: "*" rate_limit { rate: "10/day" })"}),
              HasSubstr("rate_limit.rate: \"10/day\": the unit"));
  EXPECT_THAT(error({R"(match: "*" rate_limit { rate: "10/s" burst: 0 })"}),
              HasSubstr("rate_limit.burst: must be at least 1"));
  EXPECT_THAT(error({R"(match: "*" rate_limit { rate: "10/s"
                        max_wait { seconds: -1 } })"}),
              HasSubstr("rate_limit.max_wait: must not be negative"));
}

TEST(OriginTableTest, AClientKeyThatIsNotTheCertificatesIsRefused) {
  TestCa ca(Dir());
  CertFiles one = ca.Issue({"k-one", {"k-one"}, {}});
  CertFiles two = ca.Issue({"k-two", {"k-two"}, {}});
  auto table = Build({"match: \"*\" client_cert: \"" + one.cert +
                      "\" client_key: \"" + two.key + "\""});
  ASSERT_FALSE(table.ok());
  EXPECT_THAT(std::string(table.status().message()),
              HasSubstr("does not match the certificate"));
}

TEST(SecretFileTest, AChangedFileIsReadAgainAndARemovedOneIsAnError) {
  const std::string path = WriteFile("rotating", "first\n");
  auto file = SecretFile::Open(path, "inject_headers[0].value_file");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(*(*file)->Value(), "first");
  // A Kubernetes Secret rotates by swapping a symlink: a new inode.
  const std::string next = WriteFile("rotating.next", "second-longer\n");
  ASSERT_EQ(rename(next.c_str(), path.c_str()), 0);
  EXPECT_EQ(*(*file)->Value(), "second-longer");
  ASSERT_EQ(unlink(path.c_str()), 0);
  absl::StatusOr<std::string> gone = (*file)->Value();
  ASSERT_FALSE(gone.ok());
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(gone.status().message()),
              ::testing::Not(HasSubstr("second")));
}

TEST(SecretFileTest, AControlCharacterInTheValueIsRefused) {
  const std::string path = WriteFile("control", std::string("a\rb\n"));
  auto file = SecretFile::Open(path, "inject_headers[0].value_file");
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(std::string(file.status().message()),
              HasSubstr("a control character"));
}

}  // namespace
}  // namespace egress
