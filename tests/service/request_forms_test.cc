// DoRequest and DoStreamRequest stay the same message under two names, and
// RequestAs carries every field from one to the other without copying the
// body.
#include "proto/egress/v1/request_forms.h"

#include <google/protobuf/descriptor.h>

#include <string>

#include "gtest/gtest.h"

namespace egress::v1 {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

TEST(RequestFormsTest, BothRequestsHaveTheSameFields) {
  const Descriptor* a = DoRequest::descriptor();
  const Descriptor* b = DoStreamRequest::descriptor();
  ASSERT_EQ(a->field_count(), b->field_count())
      << "a field added to one request must be added to the other";
  for (int i = 0; i < a->field_count(); ++i) {
    const FieldDescriptor* fa = a->field(i);
    const FieldDescriptor* fb = b->FindFieldByNumber(fa->number());
    ASSERT_NE(fb, nullptr) << fa->name();
    EXPECT_EQ(fa->name(), fb->name());
    EXPECT_EQ(fa->type(), fb->type()) << fa->name();
    EXPECT_EQ(fa->is_repeated(), fb->is_repeated()) << fa->name();
    if (fa->message_type() != nullptr) {
      EXPECT_EQ(fa->message_type(), fb->message_type()) << fa->name();
    }
  }
}

TEST(RequestFormsTest, EveryFieldMovesAndTheBodyIsNotCopied) {
  DoRequest request;
  request.set_method("POST");
  request.set_url("http://127.0.0.1:8080/upload");
  Header* header = request.add_headers();
  header->set_name("X-Raw");
  header->set_raw_value(std::string("caf\xe9", 4));
  request.set_body(std::string(1 << 20, 'b'));
  request.mutable_timeout()->set_seconds(7);
  const std::string expected = request.SerializeAsString();
  const char* body = request.body().data();

  DoStreamRequest stream = ForStream(std::move(request));
  EXPECT_EQ(stream.body().data(), body);
  // The same fields, so the same bytes on the wire.
  EXPECT_EQ(stream.SerializeAsString(), expected);

  DoRequest back = RequestAs<DoRequest>(std::move(stream));
  EXPECT_EQ(back.body().data(), body);
  EXPECT_EQ(back.SerializeAsString(), expected);
}

TEST(RequestFormsTest, AnAbsentTimeoutStaysAbsent) {
  DoRequest request;
  request.set_url("http://127.0.0.1/");
  EXPECT_FALSE(ForStream(request).has_timeout());
}

}  // namespace
}  // namespace egress::v1
