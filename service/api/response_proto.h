// Response conversion: the one place where an upstream response becomes the
// egress.v1 messages a caller receives, for Do (DoResponse) and for the
// head of a DoStream (ResponseHead).
//
// Thread safety: pure functions.
#pragma once

#include <chrono>
#include <string>

#include "proto/egress/v1/egress.pb.h"
#include "service/base/http_types.h"

namespace egress {

// Appends one header to `to`: in `value` when it is UTF-8, else in
// `raw_value` (see Header in egress.proto).
void AddHeader(std::string&& name, std::string&& value,
               google::protobuf::RepeatedPtrField<egress::v1::Header>& to);

// What a call's timing adds to the upstream's: time in the queue, and the
// total so far (zero to leave it unset, for Do which sets it at the end).
struct CallTiming {
  std::chrono::nanoseconds queued{0};
  std::chrono::nanoseconds total{0};
};

// Moves status, headers and timing of `from` into `to`; the body (Do) too.
void ToResponseProto(UpstreamResponse&& from, const CallTiming& timing,
                     egress::v1::DoResponse& to);
void ToHeadProto(UpstreamHead&& from, const CallTiming& timing,
                 egress::v1::ResponseHead& to);

// A duration in its proto form (google.protobuf.Duration).
void SetDuration(std::chrono::nanoseconds d, google::protobuf::Duration& out);

}  // namespace egress
