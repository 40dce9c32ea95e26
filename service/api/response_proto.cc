#include "service/api/response_proto.h"

#include <google/protobuf/util/time_util.h>

#include <utility>

namespace egress {
namespace {

// Status, headers and timing: the same fields in DoResponse and
// ResponseHead.
template <typename Message>
void FillHead(UpstreamHead& from, const CallTiming& t, Message& to) {
  to.set_status(from.status);
  to.mutable_headers()->Reserve(static_cast<int>(from.headers.size()));
  for (auto& [name, value] : from.headers) {
    AddHeader(std::move(name), std::move(value), *to.mutable_headers());
  }
  egress::v1::Timing& timing = *to.mutable_timing();
  timing.set_connection_reused(from.connection_reused);
  timing.set_attempts(from.attempts);
  SetDuration(t.queued, *timing.mutable_queued());
  SetDuration(from.upstream_time, *timing.mutable_upstream());
  if (t.total.count() > 0) SetDuration(t.total, *timing.mutable_total());
  SetDuration(from.dns_time, *timing.mutable_dns());
  if (from.connect_time.count() > 0) {
    SetDuration(from.connect_time, *timing.mutable_connect());
  }
  if (from.tls_time.count() > 0)
    SetDuration(from.tls_time, *timing.mutable_tls());
  SetDuration(from.first_byte_time, *timing.mutable_first_byte());
  timing.set_remote_address(std::move(from.remote_address));
  timing.set_remote_port(from.remote_port);
  if (from.retry_wait.count() > 0) {
    SetDuration(from.retry_wait, *timing.mutable_retry_wait());
  }
}

}  // namespace

void SetDuration(std::chrono::nanoseconds d, google::protobuf::Duration& out) {
  out = google::protobuf::util::TimeUtil::NanosecondsToDuration(d.count());
}

void AddHeader(std::string&& name, std::string&& value,
               google::protobuf::RepeatedPtrField<egress::v1::Header>& to) {
  egress::v1::Header* header = to.Add();
  header->set_name(std::move(name));
  if (IsValidUtf8(value)) {
    header->set_value(std::move(value));
  } else {
    header->set_raw_value(std::move(value));
  }
}

void ToResponseProto(UpstreamResponse&& from, const CallTiming& timing,
                     egress::v1::DoResponse& to) {
  FillHead(from, timing, to);
  to.set_body(std::move(from.body));
}

void ToHeadProto(UpstreamHead&& from, const CallTiming& timing,
                 egress::v1::ResponseHead& to) {
  FillHead(from, timing, to);
}

}  // namespace egress
