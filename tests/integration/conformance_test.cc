// Conformance against real servers that nobody here wrote, started by the test
// on loopback: Debian's python3-httpbin under `gunicorn -k gthread`
// (keep-alive) and nginx (static files: ETag and 304, HEAD, keep-alive). Our
// own fakes inject faults; these prove that ordinary HTTP comes back right
// through Do and DoStream.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/child_process.h"
#include "tests/integration/egress_harness.h"

namespace egress {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

// A server process for the whole suite, stopped by pid.
struct Server {
  pid_t pid = -1;
  int port = 0;
  void Stop() {
    StopChild(pid);
    pid = -1;
  }
};

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

class ConformanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string tmp = TempDir();
    httpbin_.port = FreeLoopbackPort();
    httpbin_.pid =
        SpawnChild({"/usr/bin/gunicorn", "-k", "gthread", "--threads", "8",
                    "-w", "1", "--keep-alive", "30", "-b",
                    absl::StrCat("127.0.0.1:", httpbin_.port), "httpbin:app"},
                   tmp + "/gunicorn.log", /*stdout_too=*/true);
    nginx_.port = FreeLoopbackPort();
    const std::string root = tmp + "/www";
    mkdir(root.c_str(), 0755);
    std::ofstream(root + "/file.txt") << "static file from nginx\n";
    std::ofstream(tmp + "/nginx.conf") << absl::StrCat(
        "daemon off; master_process off; worker_processes 1;\n"
        "pid ",
        tmp, "/nginx.pid; error_log ", tmp,
        "/nginx.err;\n"
        "events { worker_connections 64; }\n"
        "http { access_log off; keepalive_timeout 60s; keepalive_requests "
        "10000;\n"
        "  client_body_temp_path ",
        tmp, "/cb; proxy_temp_path ", tmp,
        "/px;\n"
        "  fastcgi_temp_path ",
        tmp, "/fc; uwsgi_temp_path ", tmp,
        "/uw;\n"
        "  scgi_temp_path ",
        tmp,
        "/sc;\n"
        "  server { listen 127.0.0.1:",
        nginx_.port, "; root ", root,
        "; }\n"
        "}\n");
    nginx_.pid =
        SpawnChild({"/usr/sbin/nginx", "-c", tmp + "/nginx.conf", "-p", tmp},
                   tmp + "/nginx.log", /*stdout_too=*/true);
    ASSERT_TRUE(WaitForLoopbackPort(httpbin_.port, seconds(20)))
        << "gunicorn did not start (scripts/setup.sh installs gunicorn and "
           "python3-httpbin); see "
        << tmp << "/gunicorn.log";
    ASSERT_TRUE(WaitForLoopbackPort(nginx_.port, seconds(10)))
        << "nginx did not start; see " << tmp << "/nginx.log";
  }
  static void TearDownTestSuite() {
    httpbin_.Stop();
    nginx_.Stop();
  }

  void SetUp() override { egress_.Start(); }

  static std::string Httpbin(const std::string& path) {
    return absl::StrCat("http://127.0.0.1:", httpbin_.port, path);
  }
  static std::string Nginx(const std::string& path) {
    return absl::StrCat("http://127.0.0.1:", nginx_.port, path);
  }

  // One Do call; fails the test unless gRPC says OK.
  egress::v1::DoResponse Call(
      const std::string& method, const std::string& url,
      std::vector<std::pair<std::string, std::string>> headers = {},
      std::string body = "") {
    egress::v1::DoRequest request = MakeRequest(method, url);
    for (auto& [name, value] : headers) {
      auto* h = request.add_headers();
      h->set_name(name);
      h->set_value(value);
    }
    request.set_body(std::move(body));
    egress::v1::DoResponse response;
    const auto start = std::chrono::steady_clock::now();
    grpc::Status status = egress_.Do(request, &response);
    took_ = std::chrono::duration_cast<milliseconds>(
        std::chrono::steady_clock::now() - start);
    EXPECT_TRUE(status.ok())
        << method << " " << url << ": " << status.error_message();
    return response;
  }

  static std::vector<std::string> Values(const egress::v1::DoResponse& response,
                                         const std::string& name) {
    std::vector<std::string> values;
    for (const auto& h : response.headers()) {
      if (absl::EqualsIgnoreCase(h.name(), name)) values.push_back(h.value());
    }
    return values;
  }

  static Server httpbin_;
  static Server nginx_;
  EgressHarness egress_;
  milliseconds took_{0};
};

Server ConformanceTest::httpbin_;
Server ConformanceTest::nginx_;

TEST_F(ConformanceTest, MethodsAreEchoed) {
  EXPECT_THAT(Call("GET", Httpbin("/get?x=1")).body(),
              HasSubstr("\"x\":\"1\""));
  for (const char* method : {"POST", "PUT", "PATCH", "DELETE"}) {
    auto r = Call(method, Httpbin("/" + absl::AsciiStrToLower(method)),
                  {{"Content-Type", "text/plain"}}, "hello body");
    EXPECT_EQ(r.status(), 200) << method;
    EXPECT_THAT(r.body(), HasSubstr("\"data\":\"hello body\"")) << method;
  }
}

TEST_F(ConformanceTest, HeadHasTheHeadersAndNoBody) {
  auto r = Call("HEAD", Httpbin("/get"));
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.body(), "");
  EXPECT_THAT(Values(r, "Content-Type"),
              ::testing::ElementsAre("application/json"));
  EXPECT_LT(took_, seconds(1));
  auto n = Call("HEAD", Nginx("/file.txt"));
  EXPECT_EQ(n.status(), 200);
  EXPECT_THAT(Values(n, "Content-Length"), ::testing::ElementsAre("23"));
  EXPECT_EQ(n.body(), "");
}

TEST_F(ConformanceTest, NoContentIsPromptAndBodyless) {
  auto r = Call("GET", Httpbin("/status/204"));
  EXPECT_EQ(r.status(), 204);
  EXPECT_EQ(r.body(), "");
  EXPECT_LT(took_, seconds(1));
}

TEST_F(ConformanceTest, ConditionalGetGives304AtOnceAndKeepsTheConnection) {
  auto first = Call("GET", Nginx("/file.txt"));
  ASSERT_EQ(first.status(), 200);
  std::vector<std::string> etag = Values(first, "ETag");
  ASSERT_EQ(etag.size(), 1u);
  for (int i = 0; i < 3; ++i) {
    auto again = Call("GET", Nginx("/file.txt"), {{"If-None-Match", etag[0]}});
    EXPECT_EQ(again.status(), 304);
    EXPECT_EQ(again.body(), "");
    EXPECT_LT(took_, seconds(1));  // no waiting for a body that never comes
    // The same warm connection served it: a 304 is not a session error.
    EXPECT_TRUE(again.timing().connection_reused());
  }
}

TEST_F(ConformanceTest, ErrorStatusesAreAnswers) {
  for (int code : {418, 500, 503}) {
    auto r = Call("GET", Httpbin(absl::StrCat("/status/", code)));
    EXPECT_EQ(r.status(), code);
  }
}

TEST_F(ConformanceTest, RepeatedResponseHeadersKeepTheirOrder) {
  auto r = Call("GET", Httpbin("/response-headers?X-Rep=a&X-Rep=b&X-Rep=c"));
  EXPECT_THAT(Values(r, "X-Rep"), ::testing::ElementsAre("a", "b", "c"));
}

TEST_F(ConformanceTest, RedirectsAreReturnedAsIs) {
  auto r = Call("GET", Httpbin("/redirect-to?url=/get&status_code=302"));
  EXPECT_EQ(r.status(), 302);
  EXPECT_THAT(Values(r, "Location"), ::testing::ElementsAre("/get"));
}

TEST_F(ConformanceTest, GzipBytesPassThrough) {
  auto r = Call("GET", Httpbin("/gzip"), {{"Accept-Encoding", "gzip"}});
  EXPECT_EQ(r.status(), 200);
  EXPECT_THAT(Values(r, "Content-Encoding"), ::testing::ElementsAre("gzip"));
  ASSERT_GE(r.body().size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(r.body()[0]), 0x1f);  // gzip magic
  EXPECT_EQ(static_cast<unsigned char>(r.body()[1]), 0x8b);
}

TEST_F(ConformanceTest, ChunkedStreamIsWhole) {
  auto r = Call("GET", Httpbin("/stream/5"));
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(std::count(r.body().begin(), r.body().end(), '\n'), 5);
}

TEST_F(ConformanceTest, BasicAuth) {
  EXPECT_EQ(Call("GET", Httpbin("/basic-auth/user/pass")).status(), 401);
  auto ok = Call("GET", Httpbin("/basic-auth/user/pass"),
                 {{"Authorization", "Basic dXNlcjpwYXNz"}});  // user:pass
  EXPECT_EQ(ok.status(), 200);
  EXPECT_THAT(ok.body(), HasSubstr("\"authenticated\":true"));
}

TEST_F(ConformanceTest, DelayBeyondTheTimeoutIsDeadlineExceeded) {
  egress::v1::DoRequest request = MakeRequest("GET", Httpbin("/delay/3"));
  request.mutable_timeout()->set_seconds(1);
  egress::v1::DoResponse response;
  const auto start = std::chrono::steady_clock::now();
  // The gRPC deadline (10 s) is far away: only the service's own timeout can
  // end this call after 1 s.
  grpc::Status status = egress_.Do(request, &response, seconds(10));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << status.error_message();
  EXPECT_GE(took, milliseconds(950));
  EXPECT_LT(took, milliseconds(2500));
}

TEST_F(ConformanceTest, DripArrivesIncrementallyThroughDoStream) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(15));
  auto reader = egress_.stub().DoStream(
      &context, egress::v1::ForStream(MakeRequest(
                    "GET", Httpbin("/drip?duration=2&numbytes=4&delay=0"))));
  egress::v1::DoStreamResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  ASSERT_TRUE(chunk.has_head());
  EXPECT_EQ(chunk.head().status(), 200);
  std::string body;
  std::vector<std::chrono::steady_clock::time_point> arrivals;
  while (reader->Read(&chunk)) {
    body += chunk.body();
    arrivals.push_back(std::chrono::steady_clock::now());
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(body, "****");
  // httpbin spaces the four bytes over 2 s; they must not arrive all at once.
  ASSERT_GE(arrivals.size(), 3u);
  EXPECT_GE(arrivals.back() - arrivals.front(), milliseconds(900));
}

TEST_F(ConformanceTest, StreamHeadForBodylessAnswers) {
  for (const auto& [method, url] :
       {std::pair<std::string, std::string>{"HEAD", Httpbin("/get")},
        {"GET", Httpbin("/status/204")}}) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(5));
    auto reader = egress_.stub().DoStream(
        &context, egress::v1::ForStream(MakeRequest(method, url)));
    egress::v1::DoStreamResponse chunk;
    ASSERT_TRUE(reader->Read(&chunk)) << url;
    ASSERT_TRUE(chunk.has_head()) << url;
    EXPECT_EQ(chunk.head().status(), method == "HEAD" ? 200 : 204);
    EXPECT_FALSE(reader->Read(&chunk)) << url;  // no body message
    EXPECT_TRUE(reader->Finish().ok()) << url;
  }
}

TEST_F(ConformanceTest, HundredSequentialCallsUseAtMostTwoConnections) {
  const double opened_before =
      egress_.MetricSum("egress_connections_opened_total");
  for (int i = 0; i < 100; ++i) {
    auto r = Call("GET", Httpbin("/get"));
    ASSERT_EQ(r.status(), 200);
  }
  const double opened =
      egress_.MetricSum("egress_connections_opened_total") - opened_before;
  EXPECT_LE(opened, 2);
}

}  // namespace
}  // namespace egress
