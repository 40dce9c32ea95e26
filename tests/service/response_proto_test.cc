// The one conversion of an upstream response into egress.v1 messages, for Do
// and for the head of a DoStream.
#include "service/api/response_proto.h"

#include <google/protobuf/util/time_util.h>

#include <chrono>
#include <string>

#include "gtest/gtest.h"

namespace egress {
namespace {

using google::protobuf::util::TimeUtil;
using std::chrono::milliseconds;

UpstreamResponse Sample() {
  UpstreamResponse r;
  r.status = 201;
  r.headers = {{"Content-Type", "text/plain"},
               {"Set-Cookie", "a=1"},
               {"X-Latin1", std::string("caf\xe9", 4)}};
  r.body = "hello";
  r.connection_reused = true;
  r.attempts = 2;
  r.upstream_time = milliseconds(12);
  return r;
}

TEST(ResponseProtoTest, DoGetsStatusHeadersBodyAndTiming) {
  egress::v1::DoResponse out;
  ToResponseProto(Sample(), CallTiming{milliseconds(3), milliseconds(0)}, out);
  EXPECT_EQ(out.status(), 201);
  EXPECT_EQ(out.body(), "hello");
  ASSERT_EQ(out.headers_size(), 3);
  EXPECT_EQ(out.headers(0).name(), "Content-Type");
  EXPECT_EQ(out.headers(0).value(), "text/plain");
  EXPECT_EQ(out.headers(1).name(), "Set-Cookie");
  // Not UTF-8: the bytes go in raw_value, untouched, and value stays empty.
  EXPECT_EQ(out.headers(2).value(), "");
  EXPECT_EQ(out.headers(2).raw_value(), std::string("caf\xe9", 4));
  EXPECT_TRUE(out.timing().connection_reused());
  EXPECT_EQ(out.timing().attempts(), 2);
  EXPECT_EQ(TimeUtil::DurationToMilliseconds(out.timing().queued()), 3);
  EXPECT_EQ(TimeUtil::DurationToMilliseconds(out.timing().upstream()), 12);
  // Do sets the total when it answers, not here.
  EXPECT_FALSE(out.timing().has_total());
}

TEST(ResponseProtoTest, TheStreamHeadCarriesTheSameFieldsAndItsTotal) {
  egress::v1::ResponseHead head;
  ToHeadProto(Sample(), CallTiming{milliseconds(3), milliseconds(20)}, head);
  EXPECT_EQ(head.status(), 201);
  ASSERT_EQ(head.headers_size(), 3);
  EXPECT_EQ(head.headers(2).raw_value(), std::string("caf\xe9", 4));
  EXPECT_EQ(head.timing().attempts(), 2);
  EXPECT_EQ(TimeUtil::DurationToMilliseconds(head.timing().total()), 20);
}

TEST(ResponseProtoTest, DurationsAreValidProtoDurations) {
  google::protobuf::Duration d;
  SetDuration(std::chrono::nanoseconds(1'500'000'001), d);
  EXPECT_EQ(d.seconds(), 1);
  EXPECT_EQ(d.nanos(), 500'000'001);
  SetDuration(std::chrono::hours(24 * 365 * 100), d);
  EXPECT_EQ(TimeUtil::DurationToSeconds(d), 3153600000);
}

}  // namespace
}  // namespace egress
