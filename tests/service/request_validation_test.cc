// Request validation: a table of good and bad requests, each bad one with the
// code and the words its message must contain.
#include "service/admission/request_validation.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace egress {
namespace {

using ::testing::HasSubstr;

struct Case {
  std::string name;
  std::string method;
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  absl::StatusCode code;
  std::string message;  // must appear in the error message (empty when OK)
};

egress::v1::DoRequest ToProto(const Case& c) {
  egress::v1::DoRequest request;
  request.set_method(c.method);
  request.set_url(c.url);
  for (const auto& [name, value] : c.headers) {
    egress::v1::Header* h = request.add_headers();
    h->set_name(name);
    h->set_value(value);
  }
  return request;
}

constexpr absl::StatusCode kOk = absl::StatusCode::kOk;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

const std::vector<Case>& Cases() {
  static const auto* cases = new std::vector<Case>{
      // Good requests.
      {"plain_get", "GET", "http://example.com/a", {}, kOk, ""},
      {"empty_method_is_get", "", "http://example.com/", {}, kOk, ""},
      {"post", "POST", "http://example.com/submit", {}, kOk, ""},
      {"extension_method", "PURGE", "http://example.com/", {}, kOk, ""},
      {"port", "GET", "http://example.com:8080/x", {}, kOk, ""},
      {"max_port", "GET", "http://example.com:65535/", {}, kOk, ""},
      {"query", "GET", "http://example.com/a?b=c&d=%20", {}, kOk, ""},
      {"no_path", "GET", "http://example.com", {}, kOk, ""},
      {"ipv4", "GET", "http://127.0.0.1:80/", {}, kOk, ""},
      {"ipv6", "GET", "http://[::1]:8080/", {}, kOk, ""},
      {"upper_scheme", "GET", "HTTP://Example.COM/", {}, kOk, ""},
      {"header", "GET", "http://e.com/", {{"X-Api-Key", "abc def"}}, kOk, ""},
      {"repeated_header",
       "GET",
       "http://e.com/",
       {{"Accept", "a"}, {"Accept", "b"}},
       kOk,
       ""},
      {"empty_header_value",
       "GET",
       "http://e.com/",
       {{"X-Empty", ""}},
       kOk,
       ""},
      {"fragment_dropped", "GET", "http://e.com/p#frag", {}, kOk, ""},
      // Bad methods.
      {"method_space", "GE T", "http://e.com/", {}, kInvalid, "method"},
      {"method_crlf", "GET\r\nX: y", "http://e.com/", {}, kInvalid, "method"},
      {"method_connect", "CONNECT", "http://e.com/", {}, kInvalid, "CONNECT"},
      {"method_slash",
       "GET/",
       "http://e.com/",
       {},
       kInvalid,
       "not an HTTP method"},
      // Bad URLs.
      {"empty_url", "GET", "", {}, kInvalid, "url: is empty"},
      {"relative_url", "GET", "/path", {}, kInvalid, "absolute"},
      {"https", "GET", "https://e.com/", {}, kOk, ""},
      {"https_port", "GET", "https://e.com:8443/x", {}, kOk, ""},
      {"ftp",
       "GET",
       "ftp://e.com/",
       {},
       kInvalid,
       "unsupported scheme \"ftp\""},
      {"no_host", "GET", "http:///path", {}, kInvalid, "no host"},
      {"port_zero",
       "GET",
       "http://e.com:0/",
       {},
       kInvalid,
       "out of range 1-65535"},
      {"port_too_big",
       "GET",
       "http://e.com:65536/",
       {},
       kInvalid,
       "out of range"},
      {"port_letters", "GET", "http://e.com:8o/", {}, kInvalid, "port"},
      {"port_empty", "GET", "http://e.com:/", {}, kInvalid, "port is empty"},
      {"userinfo", "GET", "http://u:p@e.com/", {}, kInvalid, "user info"},
      {"space_in_url",
       "GET",
       "http://e.com/a b",
       {},
       kInvalid,
       "space or control"},
      {"crlf_in_url", "GET", "http://e.com/\r\nHost: x", {}, kInvalid, "0x0d"},
      {"nul_in_url",
       "GET",
       std::string("http://e.com/\0", 14),
       {},
       kInvalid,
       "0x00"},
      {"non_ascii_url",
       "GET",
       "http://e.com/caf\xc3\xa9",
       {},
       kInvalid,
       "non-ASCII"},
      {"bad_host_char",
       "GET",
       "http://e!.com/",
       {},
       kInvalid,
       "invalid character"},
      {"empty_label", "GET", "http://a..b/", {}, kInvalid, "empty label"},
      {"bad_ipv6", "GET", "http://[::g]/", {}, kInvalid, "not an IPv6 address"},
      {"unclosed_ipv6", "GET", "http://[::1/", {}, kInvalid, "closing ']'"},
      // Bad headers.
      {"header_name_space",
       "GET",
       "http://e.com/",
       {{"X Bad", "v"}},
       kInvalid,
       "headers[0]: name"},
      {"header_name_empty",
       "GET",
       "http://e.com/",
       {{"", "v"}},
       kInvalid,
       "not an HTTP token"},
      {"header_value_lf",
       "GET",
       "http://e.com/",
       {{"X-A", "v\nInjected: 1"}},
       kInvalid,
       "CR, LF or NUL"},
      {"header_value_cr",
       "GET",
       "http://e.com/",
       {{"X-A", "v\r"}},
       kInvalid,
       "CR, LF or NUL"},
      {"header_value_nul",
       "GET",
       "http://e.com/",
       {{"X-A", std::string("v\0w", 3)}},
       kInvalid,
       "CR, LF or NUL"},
      {"connection",
       "GET",
       "http://e.com/",
       {{"Connection", "close"}},
       kInvalid,
       "\"Connection\" is a hop-by-hop header"},
      {"keep_alive",
       "GET",
       "http://e.com/",
       {{"keep-alive", "5"}},
       kInvalid,
       "hop-by-hop"},
      {"proxy_authorization",
       "GET",
       "http://e.com/",
       {{"Proxy-Authorization", "x"}},
       kInvalid,
       "hop-by-hop"},
      {"te",
       "GET",
       "http://e.com/",
       {{"TE", "trailers"}},
       kInvalid,
       "hop-by-hop"},
      {"trailer",
       "GET",
       "http://e.com/",
       {{"Trailer", "x"}},
       kInvalid,
       "hop-by-hop"},
      {"transfer_encoding",
       "POST",
       "http://e.com/",
       {{"Transfer-Encoding", "chunked"}},
       kInvalid,
       "hop-by-hop"},
      {"upgrade",
       "GET",
       "http://e.com/",
       {{"Upgrade", "websocket"}},
       kInvalid,
       "hop-by-hop"},
      {"host",
       "GET",
       "http://e.com/",
       {{"Host", "other.com"}},
       kInvalid,
       "\"Host\""},
      {"second_header_named",
       "GET",
       "http://e.com/",
       {{"X-Ok", "1"}, {"Upgrade", "h2c"}},
       kInvalid,
       "headers[1]"},
      {"content_length_mismatch",
       "POST",
       "http://e.com/",
       {{"Content-Length", "5"}},
       kInvalid,
       "does not match"},
  };
  return *cases;
}

class RequestValidationTest : public ::testing::TestWithParam<Case> {};

TEST_P(RequestValidationTest, AcceptsOrRefusesWithTheRightWords) {
  const Case& c = GetParam();
  absl::StatusOr<UpstreamRequest> result =
      ValidateRequest(ToProto(c), ValidationLimits());
  EXPECT_EQ(result.status().code(), c.code) << result.status();
  if (c.code != kOk) {
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(c.message));
  }
}

INSTANTIATE_TEST_SUITE_P(Table, RequestValidationTest,
                         ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

TEST(RequestValidationDetailTest, ParsesOriginAndTarget) {
  egress::v1::DoRequest proto;
  proto.set_url("HTTP://Example.COM:8080/a/b?c=d#frag");
  auto request = ValidateRequest(proto, ValidationLimits());
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->method, "GET");
  EXPECT_EQ(request->origin.scheme, "http");
  EXPECT_EQ(request->origin.host, "example.com");
  EXPECT_EQ(request->origin.port, 8080);
  EXPECT_EQ(request->target, "/a/b?c=d");
  EXPECT_EQ(request->origin.HostHeader(), "example.com:8080");
}

TEST(RequestValidationDetailTest, AnOwnedRequestGivesItsBodyUpWithoutACopy) {
  egress::v1::DoRequest proto;
  proto.set_method("POST");
  proto.set_url("http://example.com/upload");
  proto.set_body(std::string(1 << 20, 'b'));
  const char* bytes = proto.body().data();
  // A const request keeps its body; the validated request has a copy.
  auto copied = ValidateRequest(
      static_cast<const egress::v1::DoRequest&>(proto), ValidationLimits());
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(proto.body().size(), 1u << 20);
  EXPECT_NE(copied->body.data(), bytes);
  // An rvalue one gives up the very buffer: the same bytes, not a copy.
  auto moved = ValidateRequest(std::move(proto), ValidationLimits());
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->body.size(), 1u << 20);
  EXPECT_EQ(moved->body.data(), bytes);
}

TEST(RequestValidationDetailTest, AnInvalidOwnedRequestKeepsItsBody) {
  egress::v1::DoRequest proto;
  proto.set_url("ftp://example.com/");
  proto.set_body("kept");
  EXPECT_FALSE(ValidateRequest(std::move(proto), ValidationLimits()).ok());
  EXPECT_EQ(proto.body(), "kept");  // NOLINT(bugprone-use-after-move)
}

TEST(RequestValidationDetailTest, TrailingDotAndCaseAreOneSpelling) {
  // The policy, the session cache, the Host header, SNI and the certificate
  // check all see the host as written here.
  for (const char* url : {"https://Example.COM./x", "https://example.com/x",
                          "https://EXAMPLE.com.:443/x"}) {
    egress::v1::DoRequest proto;
    proto.set_url(url);
    auto request = ValidateRequest(proto, ValidationLimits());
    ASSERT_TRUE(request.ok()) << url << ": " << request.status();
    EXPECT_EQ(request->origin.host, "example.com") << url;
    EXPECT_EQ(request->origin.Key(), "https://example.com:443") << url;
    EXPECT_EQ(request->origin.HostHeader(), "example.com") << url;
  }
  egress::v1::DoRequest two_dots;
  two_dots.set_url("http://example.com../");
  EXPECT_TRUE(absl::IsInvalidArgument(
      ValidateRequest(two_dots, ValidationLimits()).status()));
}

TEST(RequestValidationDetailTest, DefaultPortAndIpv6HostHeader) {
  egress::v1::DoRequest proto;
  proto.set_url("http://[::1]?q");
  auto request = ValidateRequest(proto, ValidationLimits());
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->origin.host, "::1");
  EXPECT_EQ(request->origin.port, 80);
  EXPECT_EQ(request->target, "/?q");
  EXPECT_EQ(request->origin.HostHeader(), "[::1]");
  EXPECT_EQ(request->origin.Key(), "http://[::1]:80");
}

TEST(RequestValidationDetailTest,
     KeepsHeaderOrderAndDropsMatchingContentLength) {
  egress::v1::DoRequest proto;
  proto.set_method("POST");
  proto.set_url("http://e.com/");
  proto.set_body("hello");
  for (auto [n, v] :
       {std::pair{"B", "1"}, {"Content-Length", "5"}, {"A", "2"}}) {
    auto* h = proto.add_headers();
    h->set_name(n);
    h->set_value(v);
  }
  auto request = ValidateRequest(proto, ValidationLimits());
  ASSERT_TRUE(request.ok()) << request.status();
  ASSERT_EQ(request->headers.size(), 2u);
  EXPECT_EQ(request->headers[0].first, "B");
  EXPECT_EQ(request->headers[1].first, "A");
  EXPECT_EQ(request->body, "hello");
}

TEST(RequestValidationDetailTest, BodyOverLimitIsResourceExhausted) {
  egress::v1::DoRequest proto;
  proto.set_method("POST");
  proto.set_url("http://e.com/");
  proto.set_body(std::string(11, 'x'));
  ValidationLimits limits;
  limits.max_request_bytes = 10;
  auto request = ValidateRequest(proto, limits);
  EXPECT_EQ(request.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(request.status().message()),
              HasSubstr("--max_request_bytes=10"));
}

TEST(RequestValidationDetailTest, TooManyHeadersAndTooLongUrl) {
  ValidationLimits limits;
  limits.max_headers = 2;
  limits.max_url_bytes = 30;
  egress::v1::DoRequest proto;
  proto.set_url("http://e.com/" + std::string(40, 'a'));
  EXPECT_THAT(std::string(ValidateRequest(proto, limits).status().message()),
              HasSubstr("over the limit of 30"));
  proto.set_url("http://e.com/");
  for (int i = 0; i < 3; ++i) proto.add_headers()->set_name("X");
  auto request = ValidateRequest(proto, limits);
  EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(request.status().message()), HasSubstr("3 headers"));
}

TEST(RequestValidationDetailTest, Timeouts) {
  egress::v1::DoRequest proto;
  proto.set_url("http://e.com/");
  proto.mutable_timeout()->set_seconds(2);
  proto.mutable_timeout()->set_nanos(500000000);
  auto request = ValidateRequest(proto, ValidationLimits());
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->timeout, std::chrono::milliseconds(2500));

  proto.mutable_timeout()->set_seconds(-1);
  EXPECT_THAT(
      std::string(
          ValidateRequest(proto, ValidationLimits()).status().message()),
      HasSubstr("timeout: must be a non-negative duration"));
  proto.mutable_timeout()->set_seconds(0);
  proto.mutable_timeout()->set_nanos(0);
  EXPECT_EQ(ValidateRequest(proto, ValidationLimits()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RequestValidationDetailTest, RetryPolicy) {
  egress::v1::DoRequest proto;
  proto.set_url("http://e.com/");
  auto request = ValidateRequest(proto, ValidationLimits());
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->retry.max_attempts, 1);  // none unless asked
  EXPECT_FALSE(request->retry.max_wait.has_value());

  proto.mutable_retry()->set_max_attempts(4);
  proto.mutable_retry()->mutable_max_wait()->set_seconds(2);
  request = ValidateRequest(proto, ValidationLimits());
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->retry.max_attempts, 4);
  EXPECT_EQ(request->retry.max_wait, std::chrono::seconds(2));

  proto.mutable_retry()->set_max_attempts(11);
  EXPECT_THAT(
      std::string(
          ValidateRequest(proto, ValidationLimits()).status().message()),
      HasSubstr("retry.max_attempts: is 11; must be 0 to 10"));
  proto.mutable_retry()->set_max_attempts(2);
  proto.mutable_retry()->mutable_max_wait()->set_seconds(-1);
  EXPECT_THAT(
      std::string(
          ValidateRequest(proto, ValidationLimits()).status().message()),
      HasSubstr("retry.max_wait: must be a duration"));
}

}  // namespace
}  // namespace egress
