// CallContext: what is known of one call as it goes through the service,
// from its arrival to its answer.
//
// CallLog::Begin starts it (arrival time, request id, trace context),
// Admission fills in what validation and authentication learn (method, url,
// identity, origin), the call's reactor what the upstream answered (status,
// attempts, reuse) and the error's reason; CallLog::Complete reads it for the
// call's metrics and access log line.
//
// Thread safety: none; one call's, written by one thread at a time (gRPC's
// thread until the call reaches a worker, then the worker's).
#pragma once

#include <string>

#include "service/base/clock.h"

namespace egress {

struct CallContext {
  MonoTime start;
  std::string request_id;  // x-request-id metadata, or generated
  // W3C trace context from the caller's metadata, when well-formed; empty
  // otherwise.
  std::string traceparent;
  std::string tracestate;
  std::string reason;  // the error's ErrorInfo reason, for the access log
  std::string method = "GET";
  std::string identity = "anonymous";
  std::string url;
  std::string origin;  // once validated
  int http_status = 0;
  int attempts = 0;
  bool reused = false;
};

}  // namespace egress
