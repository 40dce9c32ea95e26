// WholeResponseSink: Do's ResponseSink, which keeps the whole response, up
// to a byte limit (--max_response_bytes), every byte of the body's buffer
// reserved from the call's BudgetLease (--max_buffered_bytes) before it is
// allocated: the whole body at once when the head frames it by
// Content-Length, else as the buffer grows.
//
// Usage (on a worker):
//   WholeResponseSink sink(max_bytes, origin.Key(), budget);
//   absl::StatusOr<ExchangeSummary> done = worker.Perform(call, sink);
//   if (done.ok()) UpstreamResponse response = sink.Finish(*done);
//
// Thread safety: one exchange at a time, on the worker's thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "service/base/http_types.h"
#include "service/pool/memory_budget.h"
#include "service/transport/http_session.h"

namespace egress {

class WholeResponseSink final : public ResponseSink {
 public:
  // `origin` names the upstream in errors; `budget` is optional.
  WholeResponseSink(size_t max_bytes, std::string origin, BudgetLease* budget);

  bool OnHead(UpstreamHead head, std::optional<uint64_t> body_length) override;
  bool OnBody(const char* data, size_t size) override;
  absl::Status AbortStatus() const override { return abort_; }
  // The answer's HTTP status once its head arrived, else 0.
  int http_status() const { return response_.status; }

  // The response, with the call's final attempts, upstream time and
  // Retry-After wait. Once, after the exchanges succeeded.
  UpstreamResponse Finish(const ExchangeSummary& summary);

 private:
  // Grows the body's buffer to `capacity`, reserved from the budget first.
  bool Reserve(size_t capacity);

  const size_t max_bytes_;
  const std::string origin_;
  BudgetLease* const budget_;
  UpstreamResponse response_;
  absl::Status abort_ = absl::ResourceExhaustedError("response refused");
};

}  // namespace egress
