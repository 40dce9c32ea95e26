// H2Guard as a specification: what it lets through unchanged, and each thing
// that closes a connection, fed whole and byte by byte.
#include "service/front/h2_guard.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/fakes/h2_frames.h"

namespace egress {
namespace {

using std::chrono::milliseconds;

class H2GuardTest : public ::testing::Test {
 protected:
  // Feeds `bytes` whole; the refusal (kNone when let through).
  ConnectionRefusal Feed(const std::string& bytes) {
    H2Guard guard(limits_);
    guard.Inspect(kH2Preface, now_);
    guard.Inspect(bytes, now_);
    return guard.refusal();
  }
  // The same, one byte at a time: the verdict must not depend on where
  // reads end.
  ConnectionRefusal FeedBytewise(const std::string& bytes) {
    H2Guard guard(limits_);
    const std::string all = std::string(kH2Preface) + bytes;
    for (char c : all) {
      if (!guard.Inspect(absl::string_view(&c, 1), now_)) break;
    }
    return guard.refusal();
  }
  void ExpectBoth(const std::string& bytes, ConnectionRefusal want) {
    EXPECT_EQ(Feed(bytes), want) << ConnectionRefusalName(Feed(bytes));
    EXPECT_EQ(FeedBytewise(bytes), want);
  }

  H2GuardLimits limits_;
  MonoTime now_ = MonoTime() + std::chrono::hours(1);
};

std::string Request(uint32_t stream) {
  return H2Frame(kH2Headers, kH2EndHeaders, stream,
                 H2RequestHeaders("/egress.v1.Egress/Do"));
}

TEST_F(H2GuardTest, ANormalConversationPasses) {
  ExpectBoth(H2Settings() + Request(1) +
                 H2Frame(kH2Data, kH2EndStream, 1, std::string(100, 'd')) +
                 H2WindowUpdate(0, 1 << 20) + H2Ping() + Request(3) +
                 H2RstStream(3),
             ConnectionRefusal::kNone);
}

TEST_F(H2GuardTest, SomethingOtherThanHttp2IsRefusedAtOnce) {
  H2Guard guard(limits_);
  EXPECT_FALSE(guard.Inspect("GET / HTTP/1.1\r\n", now_));
  EXPECT_EQ(guard.refusal(), ConnectionRefusal::kNotHttp2);
  H2Guard tls(limits_);
  EXPECT_FALSE(tls.Inspect("\x16\x03\x01", now_));  // a TLS ClientHello
  EXPECT_EQ(tls.refusal(), ConnectionRefusal::kNotHttp2);
  EXPECT_FALSE(tls.Inspect(kH2Preface, now_)) << "refused stays refused";
}

TEST_F(H2GuardTest, PaddingAndPriorityAroundTheFragmentAreSkipped) {
  std::string payload(1, static_cast<char>(10));  // pad length
  payload += std::string(5, '\0');                // priority
  payload += H2RequestHeaders("/x");
  payload += std::string(10, '\0');
  ExpectBoth(H2Frame(kH2Headers, kH2EndHeaders | 0x8 | 0x20, 1, payload),
             ConnectionRefusal::kNone);
  // Padding longer than the frame.
  std::string bad(1, static_cast<char>(200));
  bad += "abc";
  ExpectBoth(H2Frame(kH2Headers, kH2EndHeaders | 0x8, 1, bad),
             ConnectionRefusal::kMalformed);
}

TEST_F(H2GuardTest, AContinuationFloodStopsAtTheBlockBound) {
  limits_.max_header_block_bytes = 64 << 10;
  std::string fields;
  while (fields.size() < 16000) fields += HpackLiteral("x-f", "abcd");
  std::string flood = H2Frame(kH2Headers, 0, 1, H2RequestHeaders("/x"));
  for (int i = 0; i < 5; ++i) flood += H2Frame(kH2Continuation, 0, 1, fields);
  ExpectBoth(flood, ConnectionRefusal::kHeaderBlock);
  // A block split over frames is judged whole: 12,000 bytes of 9-byte fields
  // decode to 52,000 (each field counts 32 more), under the bound...
  std::string some;
  while (some.size() < 12000) some += HpackLiteral("x-f", "abcd");
  std::string fits = H2Frame(kH2Headers, 0, 1, H2RequestHeaders("/x"));
  fits += H2Frame(kH2Continuation, 0, 1, some);
  fits += H2Frame(kH2Continuation, kH2EndHeaders, 1, "");
  ExpectBoth(fits, ConnectionRefusal::kNone);
  // ...and twice as many, though only 24,000 bytes on the wire, over it.
  std::string over = H2Frame(kH2Headers, 0, 1, H2RequestHeaders("/x"));
  over += H2Frame(kH2Continuation, 0, 1, some);
  over += H2Frame(kH2Continuation, kH2EndHeaders, 1, some);
  ExpectBoth(over, ConnectionRefusal::kHeaderBlock);
}

TEST_F(H2GuardTest, ABlockMustNotBeInterrupted) {
  ExpectBoth(H2Frame(kH2Headers, 0, 1, H2RequestHeaders("/x")) + H2Ping(),
             ConnectionRefusal::kMalformed);
  ExpectBoth(H2Frame(kH2Continuation, kH2EndHeaders, 1, ""),
             ConnectionRefusal::kMalformed);
}

TEST_F(H2GuardTest, IndexedFieldsCountAsTheEntriesTheyName) {
  limits_.max_header_block_bytes = 16 << 10;
  // One 4,000-byte entry in the dynamic table (literal with incremental
  // indexing), then 5 references to it: 20,000 bytes decoded from 5 bytes.
  std::string entry = std::string(1, '\x40') + HpackInteger(3, 7, 0) + "x-b" +
                      HpackInteger(4000, 7, 0) + std::string(4000, 'v');
  std::string block = H2RequestHeaders("/x") + entry;
  ExpectBoth(H2Frame(kH2Headers, kH2EndHeaders, 1, block),
             ConnectionRefusal::kNone);
  for (int i = 0; i < 5; ++i) block += HpackIndexed(62);
  ExpectBoth(H2Frame(kH2Headers, kH2EndHeaders, 1, block),
             ConnectionRefusal::kHeaderBlock);
  // The same references in the next block: the mirror remembers the entry.
  std::string next =
      H2Frame(kH2Headers, kH2EndHeaders, 1, H2RequestHeaders("/x") + entry);
  std::string refs = H2RequestHeaders("/x");
  for (int i = 0; i < 5; ++i) refs += HpackIndexed(62);
  ExpectBoth(next + H2Frame(kH2Headers, kH2EndHeaders, 3, refs),
             ConnectionRefusal::kHeaderBlock);
}

TEST_F(H2GuardTest, MalformedHpackCloses) {
  const auto block = [](const std::string& fields) {
    return H2Frame(kH2Headers, kH2EndHeaders, 1, fields);
  };
  // Index 0.
  ExpectBoth(block(HpackIndexed(0)), ConnectionRefusal::kMalformed);
  // An integer with 12 zero-padding bytes.
  ExpectBoth(block(std::string(1, '\0') + HpackInteger(3, 7, 0) + "x-a" +
                   HpackInteger(200, 7, 0, 12) + std::string(200, 'v')),
             ConnectionRefusal::kMalformed);
  // A string longer than the block.
  ExpectBoth(block(std::string(1, '\0') + HpackInteger(50, 7, 0) + "abc"),
             ConnectionRefusal::kMalformed);
  // A table size over the server's 4,096.
  ExpectBoth(block(HpackInteger(1 << 20, 5, 0x20)),
             ConnectionRefusal::kMalformed);
  // A client's PUSH_PROMISE.
  ExpectBoth(H2Frame(5, kH2EndHeaders, 1, "\0\0\0\2"),
             ConnectionRefusal::kMalformed);
}

TEST_F(H2GuardTest, ResetsBeyondTheRateCloseAndTheBucketRefills) {
  limits_.resets_per_second = 100;  // a burst of 1,000
  H2Guard guard(limits_);
  ASSERT_TRUE(guard.Inspect(kH2Preface, now_));
  for (uint32_t i = 0; i < 1000; ++i) {
    ASSERT_TRUE(
        guard.Inspect(Request(2 * i + 1) + H2RstStream(2 * i + 1), now_))
        << i;
  }
  // Ten seconds later the bucket is full again.
  now_ += std::chrono::seconds(10);
  for (uint32_t i = 1000; i < 2000; ++i) {
    ASSERT_TRUE(guard.Inspect(H2RstStream(2 * i + 1), now_)) << i;
  }
  EXPECT_FALSE(guard.Inspect(H2RstStream(4001), now_));
  EXPECT_EQ(guard.refusal(), ConnectionRefusal::kResetFlood);
}

TEST_F(H2GuardTest, ControlFramesBeyondTheRateCloseButAcksAreFree) {
  limits_.control_frames_per_second = 10;  // a burst of 100
  H2Guard guard(limits_);
  ASSERT_TRUE(guard.Inspect(kH2Preface, now_));
  const std::string ack = H2Frame(kH2Ping, 0x1, 0, std::string(8, 'a'));
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(guard.Inspect(ack, now_));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(guard.Inspect(H2Ping(), now_));
  EXPECT_FALSE(guard.Inspect(H2Settings(), now_));
  EXPECT_EQ(guard.refusal(), ConnectionRefusal::kControlFlood);
  // Empty DATA frames and zero WINDOW_UPDATEs count too.
  H2Guard empty(limits_);
  ASSERT_TRUE(empty.Inspect(kH2Preface, now_));
  bool open = true;
  for (int i = 0; i < 200 && open; ++i) {
    open =
        empty.Inspect(H2Frame(kH2Data, 0, 1, "") + H2WindowUpdate(1, 0), now_);
  }
  EXPECT_FALSE(open);
  EXPECT_EQ(empty.refusal(), ConnectionRefusal::kControlFlood);
}

TEST_F(H2GuardTest, PingsTheClientDoesNotReadTheAnswersToAreBounded) {
  H2Guard guard(limits_);
  ASSERT_TRUE(guard.Inspect(kH2Preface, now_));
  const std::string ack = H2Frame(kH2Ping, 0x1, 0, std::string(8, 'p'));
  // Answered as they come: any number (within the rate).
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(guard.Inspect(H2Ping(), now_)) << i;
    guard.ServerBytes(ack);
  }
  // Unanswered: defaults::kMaxUnansweredControlFrames, then the connection
  // closes.
  for (int i = 0; i < defaults::kMaxUnansweredControlFrames; ++i) {
    ASSERT_TRUE(guard.Inspect(H2Ping(), now_)) << i;
  }
  EXPECT_FALSE(guard.Inspect(H2Ping(), now_));
  EXPECT_EQ(guard.refusal(), ConnectionRefusal::kControlFlood);
}

// gRPC clients (grpc-go's BDP estimator) send a PING per burst of data they
// receive: as many as their calls. After server DATA or HEADERS a PING is
// free; without them, the same pings are a flood.
TEST_F(H2GuardTest, APingAfterServerDataIsFreeAsgRpcCountsIt) {
  limits_.control_frames_per_second = 10;  // a burst of 100
  const std::string ack = H2Frame(kH2Ping, 0x1, 0, std::string(8, 'p'));
  const std::string data = H2Frame(kH2Data, 0, 1, "answer");
  H2Guard busy(limits_);
  ASSERT_TRUE(busy.Inspect(kH2Preface, now_));
  for (int i = 0; i < 20000; ++i) {
    busy.ServerBytes(data);
    ASSERT_TRUE(busy.Inspect(H2Ping(), now_)) << i;
    busy.ServerBytes(ack);
  }
  // Two pings after one DATA frame: the second is charged.
  H2Guard greedy(limits_);
  ASSERT_TRUE(greedy.Inspect(kH2Preface, now_));
  bool open = true;
  for (int i = 0; i < 200 && open; ++i) {
    greedy.ServerBytes(data);
    open = greedy.Inspect(H2Ping(), now_) && greedy.Inspect(H2Ping(), now_);
    greedy.ServerBytes(ack + ack);
  }
  EXPECT_FALSE(open);
  EXPECT_EQ(greedy.refusal(), ConnectionRefusal::kControlFlood);
}

TEST_F(H2GuardTest, StreamsOpenOnTheWireAreBoundedByTheAdvertisedLimit) {
  limits_.max_concurrent_streams = 10;
  H2Guard guard(limits_);
  ASSERT_TRUE(guard.Inspect(kH2Preface, now_));
  // Ten open; the server ends one (trailers with END_STREAM), the client
  // resets another: two more fit, the thirteenth does not.
  for (uint32_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(guard.Inspect(Request(2 * i + 1), now_));
  }
  guard.ServerBytes(H2Frame(kH2Headers, kH2EndHeaders | kH2EndStream, 1, "x"));
  ASSERT_TRUE(guard.Inspect(H2RstStream(3), now_));
  ASSERT_TRUE(guard.Inspect(Request(21), now_));
  ASSERT_TRUE(guard.Inspect(Request(23), now_));
  EXPECT_FALSE(guard.Inspect(Request(25), now_));
  EXPECT_EQ(guard.refusal(), ConnectionRefusal::kStreams);
}

}  // namespace
}  // namespace egress
