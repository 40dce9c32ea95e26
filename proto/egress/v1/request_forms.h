// DoRequest and DoStreamRequest: the same fields under the two names buf lint
// asks for (one request type per RPC). RequestAs turns one into the other,
// moving strings and repeated fields, so that code written for one serves both
// (tests/service/request_forms_test.cc checks that the fields stay the same).
//
// Thread safety: pure functions.
#pragma once

#include <utility>

#include "proto/egress/v1/egress.pb.h"

namespace egress::v1 {

template <typename To, typename From>
To RequestAs(From from) {
  To to;
  to.mutable_method()->swap(*from.mutable_method());
  to.mutable_url()->swap(*from.mutable_url());
  to.mutable_headers()->Swap(from.mutable_headers());
  to.mutable_body()->swap(*from.mutable_body());
  if (from.has_timeout()) to.mutable_timeout()->Swap(from.mutable_timeout());
  if (from.has_retry()) to.mutable_retry()->Swap(from.mutable_retry());
  return to;
}

// The DoStream form of a DoRequest.
inline DoStreamRequest ForStream(DoRequest request) {
  return RequestAs<DoStreamRequest>(std::move(request));
}

}  // namespace egress::v1
