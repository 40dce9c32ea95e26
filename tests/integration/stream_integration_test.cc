// DoStream end to end: events forwarded as they arrive, large bodies intact
// with bounded memory, slow readers, cancellation, failures mid-body, and
// agreement with Do.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/scripted_upstream.h"
#include "tests/fakes/wait_until.h"
#include "tests/integration/egress_harness.h"

namespace egress {
namespace {

using ::egress::v1::DoRequest;
using ::egress::v1::DoResponse;
using ::egress::v1::DoStreamResponse;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

// What a caller saw of one stream.
struct Received {
  bool got_head = false;
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // kept only when asked
  size_t body_bytes = 0;
  size_t messages = 0;
  bool pattern_ok = true;  // every byte matched PatternByte
  grpc::Status end;
};

struct ReadOptions {
  bool keep_body = true;
  bool check_pattern = false;
  milliseconds delay_per_message{0};
  // Cancel after this many body bytes (0: never).
  size_t cancel_after = 0;
  // Called with the body received so far after each piece.
  std::function<void(const std::string& body)> on_body;
};

class StreamIntegrationTest : public ::testing::Test {
 protected:
  Received Stream(const DoRequest& request, const ReadOptions& options = {},
                  milliseconds deadline = milliseconds(60000)) {
    Received got;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    auto reader =
        egress_.stub().DoStream(&context, egress::v1::ForStream(request));
    DoStreamResponse chunk;
    while (reader->Read(&chunk)) {
      ++got.messages;
      if (chunk.has_head()) {
        EXPECT_FALSE(got.got_head) << "a second head";
        EXPECT_EQ(got.body_bytes, 0u) << "head after body";
        got.got_head = true;
        got.status = chunk.head().status();
        for (const auto& h : chunk.head().headers()) {
          got.headers.emplace_back(h.name(), h.value());
        }
        continue;
      }
      const std::string& piece = chunk.body();
      EXPECT_LE(piece.size(), 64u << 10) << "chunk over 64 KiB";
      if (options.check_pattern) {
        for (size_t i = 0; i < piece.size(); ++i) {
          if (piece[i] != PatternByte(got.body_bytes + i)) {
            got.pattern_ok = false;
            break;
          }
        }
      }
      if (options.keep_body) got.body += piece;
      got.body_bytes += piece.size();
      if (options.on_body) options.on_body(got.body);
      if (options.cancel_after > 0 && got.body_bytes >= options.cancel_after) {
        context.TryCancel();
        break;
      }
      if (options.delay_per_message.count() > 0) {
        std::this_thread::sleep_for(options.delay_per_message);
      }
    }
    got.end = reader->Finish();
    return got;
  }

  std::unique_ptr<FakeUpstream> upstream_ = std::make_unique<FakeUpstream>();
  EgressHarness egress_;
};

// Peak resident memory of this process since the last ResetPeakRss, in MiB.
double PeakRssMib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024;
  }
  return -1;
}
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;  // ASan's allocator keeps freed memory around
#else
constexpr bool kAsan = false;
#endif

TEST_F(StreamIntegrationTest, EachEventArrivesBeforeTheNextIsSent) {
  // In lockstep: the upstream writes event i + 1 only once the caller has
  // received event i. Had egressd held an event back to fill a buffer, the
  // upstream would wait for an acknowledgement that cannot come, and count a
  // 10 s timeout; no timing of the machine's makes this pass or fail.
  egress_.Start();
  ReadOptions options;
  options.on_body = [this](const std::string& body) {
    int events = 0;
    for (size_t at = body.find("\n\n"); at != std::string::npos;
         at = body.find("\n\n", at + 2)) {
      ++events;
    }
    upstream_->AckSseEvent(events);
  };
  Received got =
      Stream(MakeRequest("GET", upstream_->Url("/sse-lockstep/5")), options);
  ASSERT_TRUE(got.end.ok()) << got.end.error_message();
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body,
            "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n");
  EXPECT_EQ(upstream_->sse_sent().size(), 5u);
  EXPECT_EQ(upstream_->sse_ack_timeouts(), 0)
      << "an event reached the caller only with the next one";
}

TEST_F(StreamIntegrationTest, LargeBodyArrivesIntactWithBoundedMemory) {
  egress_.Start();
  constexpr size_t kSize = 200u << 20;
  ReadOptions options;
  options.keep_body = false;
  options.check_pattern = true;
  ResetPeakRss();
  const double before = PeakRssMib();
  Received got = Stream(
      MakeRequest("GET", upstream_->Url(absl::StrCat("/stream/", kSize))),
      options);
  const double peak = PeakRssMib();
  ASSERT_TRUE(got.end.ok()) << got.end.error_message();
  EXPECT_EQ(got.body_bytes, kSize);
  EXPECT_TRUE(got.pattern_ok);
  std::printf(
      "200 MiB streamed in %zu messages; process peak RSS %.1f MiB "
      "(%.1f MiB before)\n",
      got.messages, peak, before);
  // Client, service and upstream share this process; none may hold the body.
  if (!kAsan) {
    EXPECT_LT(peak - before, 64);
  }
}

TEST_F(StreamIntegrationTest, ChunkedBodyArrivesIntact) {
  egress_.Start();
  constexpr size_t kSize = 20u << 20;
  ReadOptions options;
  options.keep_body = false;
  options.check_pattern = true;
  Received got = Stream(
      MakeRequest("GET", upstream_->Url(absl::StrCat("/chunked/", kSize))),
      options);
  ASSERT_TRUE(got.end.ok()) << got.end.error_message();
  EXPECT_EQ(got.body_bytes, kSize);
  EXPECT_TRUE(got.pattern_ok);
}

TEST_F(StreamIntegrationTest, SlowReaderGetsEveryByte) {
  egress_.Start();
  constexpr size_t kSize = 4u << 20;
  ReadOptions options;
  options.keep_body = false;
  options.check_pattern = true;
  options.delay_per_message = milliseconds(2);
  Received got = Stream(
      MakeRequest("GET", upstream_->Url(absl::StrCat("/stream/", kSize))),
      options);
  ASSERT_TRUE(got.end.ok()) << got.end.error_message();
  EXPECT_EQ(got.body_bytes, kSize);
  EXPECT_TRUE(got.pattern_ok);
}

TEST_F(StreamIntegrationTest, CancelMidBodyClosesTheUpstreamAndFreesTheWorker) {
  egress_.Start([](Config& c) { c.workers = 1; });
  ReadOptions options;
  options.keep_body = false;
  options.cancel_after = 1 << 20;
  Received got =
      Stream(MakeRequest("GET", upstream_->Url("/stream/1073741824")), options);
  EXPECT_EQ(got.end.error_code(), grpc::StatusCode::CANCELLED);
  // The upstream saw its transfer cut short: the connection was closed, not
  // kept half-read.
  EXPECT_TRUE(WaitUntil([&] { return upstream_->aborted_streams() == 1; }));
  EXPECT_TRUE(WaitUntil([&] {
    return egress_.Metric("egress_stream_aborts_total{reason=\"cancelled\"}") ==
           1;
  }));
  // The only worker is free again and the origin's session healthy.
  DoResponse response;
  grpc::Status status =
      egress_.Do(MakeRequest("GET", upstream_->Url("/echo")), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), 200);
  EXPECT_EQ(
      egress_.Metric("egress_session_recreations_total{reason=\"errors\"}"), 0);
}

TEST_F(StreamIntegrationTest, DeadlineMidBodyAbandonsTheUpstream) {
  egress_.Start([](Config& c) { c.workers = 1; });
  ReadOptions options;
  options.keep_body = false;
  options.delay_per_message = milliseconds(5);
  Received got =
      Stream(MakeRequest("GET", upstream_->Url("/stream/1073741824")), options,
             milliseconds(500));
  EXPECT_EQ(got.end.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_GT(got.body_bytes, 0u);
  EXPECT_TRUE(WaitUntil([&] { return upstream_->aborted_streams() == 1; }));
  DoResponse response;
  EXPECT_TRUE(
      egress_.Do(MakeRequest("GET", upstream_->Url("/echo")), &response).ok());
}

TEST_F(StreamIntegrationTest,
       ReaderThatStopsReadingIsCutOffAfterTheIdleTimeout) {
  egress_.Start(
      [](Config& c) { c.service.stream_idle_timeout = milliseconds(300); });
  grpc::ClientContext context;
  auto reader = egress_.stub().DoStream(
      &context, egress::v1::ForStream(
                    MakeRequest("GET", upstream_->Url("/stream/1073741824"))));
  DoStreamResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));  // the head
  // Read nothing for a while: gRPC's windows fill, the worker's write stalls.
  EXPECT_TRUE(WaitUntil([&] {
    return egress_.Metric(
               "egress_stream_aborts_total{reason=\"slow_reader\"}") == 1;
  }));
  while (reader->Read(&chunk)) {
  }
  grpc::Status end = reader->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(end.error_message(), HasSubstr("the caller read nothing"));
  EXPECT_TRUE(WaitUntil([&] { return upstream_->aborted_streams() == 1; }));
}

TEST_F(StreamIntegrationTest, UpstreamResetMidBodyEndsWithUnavailableNotOk) {
  ScriptedUpstream reset(Script::kResetMidBody);
  egress_.Start();
  Received got = Stream(MakeRequest("GET", reset.Url("/")));
  EXPECT_TRUE(got.got_head);
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.end.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(got.end.error_message(), HasSubstr("response body incomplete"));
  EXPECT_LT(got.body_bytes, 1000u);  // truncated, and not reported as complete
}

TEST_F(StreamIntegrationTest, MaxStreamBytesEndsTheStream) {
  egress_.Start([](Config& c) { c.service.max_stream_bytes = 100000; });
  Received got = Stream(MakeRequest("GET", upstream_->Url("/stream/1000000")));
  EXPECT_EQ(got.end.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(got.end.error_message(), HasSubstr("--max_stream_bytes=100000"));
  EXPECT_LE(got.body_bytes, 100000u);
  EXPECT_EQ(egress_.Metric("egress_stream_aborts_total{reason=\"too_large\"}"),
            1);
  // Do keeps its own limit: 1 MB is under --max_response_bytes.
  DoResponse response;
  EXPECT_TRUE(
      egress_
          .Do(MakeRequest("GET", upstream_->Url("/stream/1000000")), &response)
          .ok());
}

TEST_F(StreamIntegrationTest, BadRequestIsRefusedBeforeAnyMessage) {
  egress_.Start();
  Received got = Stream(MakeRequest("GET", "ftp://example.com/"));
  EXPECT_EQ(got.end.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(got.messages, 0u);
}

TEST_F(StreamIntegrationTest, HeaderBytesThatAreNotUtf8ArriveInRawValue) {
  // A Latin-1 filename, as servers in the wild send it: the response must
  // still parse in every language, and the bytes must survive.
  ScriptedUpstream upstream([](int fd, int) {
    return ScriptedUpstream::Send(
        fd,
        "HTTP/1.1 200 OK\r\nContent-Disposition: attachment; "
        "filename=\"caf\xe9.txt\"\r\nX-Plain: ok\r\nContent-Length: 2\r\n"
        "\r\nok");
  });
  egress_.Start();
  auto check = [](const google::protobuf::RepeatedPtrField<egress::v1::Header>&
                      headers) {
    ASSERT_GE(headers.size(), 2);
    EXPECT_EQ(headers[0].name(), "Content-Disposition");
    EXPECT_EQ(headers[0].value(), "");
    EXPECT_EQ(headers[0].raw_value(), "attachment; filename=\"caf\xe9.txt\"");
    EXPECT_EQ(headers[1].value(), "ok");  // UTF-8 values stay in value
    EXPECT_EQ(headers[1].raw_value(), "");
  };
  egress::v1::DoResponse response;
  grpc::Status status =
      egress_.Do(MakeRequest("GET", upstream.Url("/")), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  check(response.headers());
  grpc::ClientContext context;
  auto reader = egress_.stub().DoStream(
      &context, egress::v1::ForStream(MakeRequest("GET", upstream.Url("/"))));
  egress::v1::DoStreamResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  check(chunk.head().headers());
  while (reader->Read(&chunk)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(StreamIntegrationTest, DoAndDoStreamAgree) {
  egress_.Start();
  for (const char* path :
       {"/repeat", "/status/404", "/bytes/100000", "/chunked/70000"}) {
    DoResponse whole;
    ASSERT_TRUE(
        egress_.Do(MakeRequest("GET", upstream_->Url(path)), &whole).ok())
        << path;
    Received streamed = Stream(MakeRequest("GET", upstream_->Url(path)));
    ASSERT_TRUE(streamed.end.ok())
        << path << ": " << streamed.end.error_message();
    EXPECT_EQ(streamed.status, whole.status()) << path;
    EXPECT_EQ(streamed.body, whole.body()) << path;
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& h : whole.headers()) {
      // Date may tick between the two calls.
      if (h.name() != "Date") headers.emplace_back(h.name(), h.value());
    }
    std::vector<std::pair<std::string, std::string>> streamed_headers;
    for (const auto& h : streamed.headers) {
      if (h.first != "Date") streamed_headers.push_back(h);
    }
    EXPECT_EQ(streamed_headers, headers) << path;
  }
}

}  // namespace
}  // namespace egress
