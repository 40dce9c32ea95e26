// ResponseHeadReader on its own: what a hostile or merely odd upstream can put
// in a response head, fed whole and byte by byte. No sockets.
#include "service/transport/response_head.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace egress {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

class ResponseHeadTest : public ::testing::Test {
 protected:
  // Feeds `bytes` in one piece; the reader's final status.
  absl::Status ReadAll(const std::string& bytes, bool head_request = false) {
    reader_ = std::make_unique<ResponseHeadReader>(limits_, head_request);
    return reader_->Append(bytes);
  }
  // Feeds `bytes` one byte at a time, stopping at the first error.
  absl::Status ReadByteByByte(const std::string& bytes) {
    reader_ = std::make_unique<ResponseHeadReader>(limits_, false);
    for (char c : bytes) {
      if (reader_->done()) break;
      absl::Status s = reader_->Append(std::string(1, c));
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  const ResponseHead& head() const { return reader_->head(); }

  HeadLimits limits_;
  std::unique_ptr<ResponseHeadReader> reader_;
};

TEST_F(ResponseHeadTest, ReadsStatusHeadersAndContentLength) {
  ASSERT_TRUE(ReadAll("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                      "X-A: 1\r\nx-a:  2 \r\n\r\nhello")
                  .ok());
  ASSERT_TRUE(reader_->done());
  EXPECT_EQ(head().status, 200);
  EXPECT_THAT(head().headers, ElementsAre(Pair("Content-Length", "5"),
                                          Pair("X-A", "1"), Pair("x-a", "2")));
  EXPECT_EQ(head().framing, BodyFraming::kContentLength);
  EXPECT_EQ(head().content_length, 5u);
  EXPECT_TRUE(head().keep_alive);
  EXPECT_EQ(reader_->rest(), "hello");
  EXPECT_EQ(reader_->CanonicalHead(),
            "HTTP/1.1 200\r\nContent-Length: 5\r\n\r\n");
}

TEST_F(ResponseHeadTest, SameResultByteByByte) {
  ASSERT_TRUE(ReadByteByByte("HTTP/1.1 404 Not Found\r\nA: b\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n")
                  .ok());
  ASSERT_TRUE(reader_->done());
  EXPECT_EQ(head().status, 404);
  EXPECT_EQ(head().framing, BodyFraming::kChunked);
}

TEST_F(ResponseHeadTest, SkipsInterimResponsesWithTheirHeaders) {
  ASSERT_TRUE(ReadAll("HTTP/1.1 100 Continue\r\n\r\n"
                      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload"
                      "\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n"
                      "\r\n")
                  .ok());
  ASSERT_TRUE(reader_->done());
  EXPECT_EQ(head().status, 201);
  EXPECT_EQ(head().interim_responses, 2);
  EXPECT_THAT(head().headers, ElementsAre(Pair("Content-Length", "0")));
}

TEST_F(ResponseHeadTest, BodylessResponsesHaveNoBodyWhateverTheyClaim) {
  // 304 without Content-Length, as nginx sends it: no body, still keep-alive.
  ASSERT_TRUE(ReadAll("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n").ok());
  EXPECT_EQ(head().framing, BodyFraming::kNone);
  EXPECT_TRUE(head().keep_alive);
  ASSERT_TRUE(ReadAll("HTTP/1.1 204 No Content\r\n\r\n").ok());
  EXPECT_EQ(head().framing, BodyFraming::kNone);
  ASSERT_TRUE(ReadAll("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
                      /*head_request=*/true)
                  .ok());
  EXPECT_EQ(head().framing, BodyFraming::kNone);
  EXPECT_THAT(head().headers, ElementsAre(Pair("Content-Length", "99")));
  EXPECT_EQ(reader_->CanonicalHead(), "HTTP/1.1 200\r\n\r\n");
}

TEST_F(ResponseHeadTest, NoLengthMeansUntilCloseAndNoReuse) {
  ASSERT_TRUE(ReadAll("HTTP/1.1 200 OK\r\n\r\nabc").ok());
  EXPECT_EQ(head().framing, BodyFraming::kUntilClose);
  EXPECT_FALSE(head().keep_alive);
  EXPECT_EQ(reader_->CanonicalHead(),
            "HTTP/1.1 200\r\nConnection: close\r\n\r\n");
}

TEST_F(ResponseHeadTest, ChunkedMustBeTheLastCoding) {
  ASSERT_TRUE(
      ReadAll("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
          .ok());
  EXPECT_EQ(head().framing, BodyFraming::kChunked);
  ASSERT_TRUE(
      ReadAll("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
          .ok());
  EXPECT_EQ(head().framing, BodyFraming::kUntilClose);
}

TEST_F(ResponseHeadTest, ConnectionCloseAndHttp10) {
  ASSERT_TRUE(ReadAll("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                      "Connection: keep-alive, Close\r\n\r\n")
                  .ok());
  EXPECT_FALSE(head().keep_alive);
  ASSERT_TRUE(ReadAll("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").ok());
  EXPECT_FALSE(head().keep_alive);
  EXPECT_EQ(head().version_minor, 0);
}

TEST_F(ResponseHeadTest, AcceptsBareLfLinesAndMissingReason) {
  ASSERT_TRUE(ReadAll("HTTP/1.1 200\nContent-Length: 2\n\nok").ok());
  ASSERT_TRUE(reader_->done());
  EXPECT_EQ(head().status, 200);
  EXPECT_EQ(reader_->rest(), "ok");
}

TEST_F(ResponseHeadTest, KeepsNonUtf8BytesAndJoinsFoldedLines) {
  ASSERT_TRUE(ReadAll("HTTP/1.1 200 OK\r\nContent-Disposition: attachment; "
                      "filename=\"caf\xe9.txt\"\r\nX-Long: a\r\n  b\r\n"
                      "Content-Length: 0\r\n\r\n")
                  .ok());
  EXPECT_THAT(head().headers,
              ElementsAre(Pair("Content-Disposition",
                               "attachment; filename=\"caf\xe9.txt\""),
                          Pair("X-Long", "a b"), Pair("Content-Length", "0")));
}

TEST_F(ResponseHeadTest, RefusesStatusCodesOutsideTheRange) {
  absl::Status s = ReadAll("HTTP/1.1 099 Odd\r\n\r\n");
  EXPECT_TRUE(absl::IsUnavailable(s));
  EXPECT_THAT(s.message(), HasSubstr("status code 099 is outside 100-599"));
  s = ReadAll("HTTP/1.1 600 Odd\r\n\r\n");
  EXPECT_THAT(s.message(), HasSubstr("status code 600"));
}

TEST_F(ResponseHeadTest, RefusesMalformedStatusLines) {
  for (const char* line :
       {"HTTP/2.0 200 OK", "HTTP/1.1 20 OK", "HTTP/1.1 2000 OK", "ICY 200 OK",
        "HTTP/1.1  200 OK", "HTTP/1.1 200OK", "garbage"}) {
    absl::Status s = ReadAll(std::string(line) + "\r\n\r\n");
    EXPECT_TRUE(absl::IsUnavailable(s)) << line;
    EXPECT_THAT(s.message(), HasSubstr("malformed response: status line"))
        << line;
  }
}

TEST_F(ResponseHeadTest, RefusesAmbiguousOrInvalidFraming) {
  absl::Status s = ReadAll(
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
      "\r\n");
  EXPECT_THAT(s.message(), HasSubstr("both Content-Length and "
                                     "Transfer-Encoding"));
  s = ReadAll("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
  EXPECT_THAT(s.message(), HasSubstr("invalid Content-Length"));
  s = ReadAll(
      "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n");
  EXPECT_THAT(s.message(), HasSubstr("invalid Content-Length"));
  s = ReadAll(
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
  EXPECT_THAT(s.message(), HasSubstr("conflicting Content-Length"));
  // Repeated equal values are one value.
  EXPECT_TRUE(ReadAll("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n").ok());
  EXPECT_EQ(head().content_length, 2u);
}

TEST_F(ResponseHeadTest, RefusesBadHeaderLines) {
  EXPECT_THAT(ReadAll("HTTP/1.1 200 OK\r\nno colon\r\n\r\n").message(),
              HasSubstr("header line without a colon"));
  EXPECT_THAT(ReadAll("HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n").message(),
              HasSubstr("invalid header name"));
  constexpr char kNul[] = "HTTP/1.1 200 OK\r\nA: x\0y\r\n\r\n";
  EXPECT_THAT(ReadAll(std::string(kNul, sizeof(kNul) - 1)).message(),
              HasSubstr("control character in header value"));
  EXPECT_THAT(ReadAll("HTTP/1.1 200 OK\r\nA: x\ry\r\n\r\n").message(),
              HasSubstr("bare CR"));
  EXPECT_THAT(ReadAll("HTTP/1.1 101 Switching Protocols\r\n\r\n").message(),
              HasSubstr("switched protocols"));
}

TEST_F(ResponseHeadTest, LongStatusLineFailsAsSoonAsItPassesTheLimit) {
  limits_.max_line_bytes = 100;
  // No line end ever arrives: the reader gives up after the limit, not at
  // the end of the (endless) line.
  absl::Status s = ReadByteByByte("HTTP/1.1 200 " + std::string(1000, 'a'));
  EXPECT_TRUE(absl::IsUnavailable(s));
  EXPECT_THAT(s.message(),
              HasSubstr("status line over --max_response_line_bytes=100"));
}

TEST_F(ResponseHeadTest, LongHeaderLineIsNamed) {
  limits_.max_line_bytes = 100;
  absl::Status s =
      ReadAll("HTTP/1.1 200 OK\r\nA: " + std::string(200, 'b') + "\r\n\r\n");
  EXPECT_THAT(s.message(),
              HasSubstr("header line over --max_response_line_bytes=100"));
}

TEST_F(ResponseHeadTest, TooManyHeaders) {
  limits_.max_headers = 10;
  std::string head = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 11; ++i) head += "a: b\r\n";
  absl::Status s = ReadAll(head);  // fails before the head is complete
  EXPECT_THAT(s.message(), HasSubstr("over --max_response_headers=10"));
}

TEST_F(ResponseHeadTest, WholeHeadLimitCountsInterimResponses) {
  limits_.max_head_bytes = 1000;
  std::string flood;
  for (int i = 0; i < 100; ++i) flood += "HTTP/1.1 100 Continue\r\n\r\n";
  absl::Status s = ReadByteByByte(flood);
  EXPECT_TRUE(absl::IsUnavailable(s));
  EXPECT_THAT(s.message(),
              HasSubstr("head over --max_response_head_bytes=1000"));
  EXPECT_THAT(s.message(), HasSubstr("interim 1xx responses"));
}

TEST_F(ResponseHeadTest, MemoryStaysBoundedUnderAHeaderFlood) {
  limits_.max_head_bytes = 64 << 10;
  limits_.max_headers = 1 << 20;  // only the byte budget stops this one
  reader_ = std::make_unique<ResponseHeadReader>(limits_, false);
  ASSERT_TRUE(reader_->Append("HTTP/1.1 200 OK\r\n").ok());
  const std::string block(16 << 10, 'x');
  std::string lines;
  while (lines.size() < (16 << 10)) lines += "a:b\r\n";
  absl::Status s;
  int appended = 0;
  for (; appended < 10000 && s.ok(); ++appended) s = reader_->Append(lines);
  EXPECT_THAT(s.message(), HasSubstr("--max_response_head_bytes=65536"));
  EXPECT_LE(appended, 5);  // refused within the budget plus one block
}

}  // namespace
}  // namespace egress
