#include "service/pool/whole_response.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/base/error_details.h"

namespace egress {

WholeResponseSink::WholeResponseSink(size_t max_bytes, std::string origin,
                                     BudgetLease* budget)
    : max_bytes_(max_bytes), origin_(std::move(origin)), budget_(budget) {}

bool WholeResponseSink::OnHead(UpstreamHead head,
                               std::optional<uint64_t> body_length) {
  static_cast<UpstreamHead&>(response_) = std::move(head);
  if (body_length.has_value() && *body_length <= max_bytes_) {
    return Reserve(static_cast<size_t>(*body_length));
  }
  return true;
}

bool WholeResponseSink::OnBody(const char* data, size_t size) {
  std::string& body = response_.body;
  if (body.size() + size > max_bytes_) {
    abort_ = WithReason(
        absl::ResourceExhaustedError(
            absl::StrFormat("%s: response body is over --max_response_bytes=%d",
                            origin_, max_bytes_)),
        ErrorReason::kResponseTooLarge,
        {{"origin", origin_},
         {"limit", absl::StrCat("--max_response_bytes=", max_bytes_)}});
    return false;
  }
  // std::string at least doubles its buffer when it grows.
  if (body.size() + size > body.capacity() &&
      !Reserve(std::min(max_bytes_,
                        std::max(body.size() + size, 2 * body.capacity())))) {
    return false;
  }
  body.append(data, size);
  return true;
}

UpstreamResponse WholeResponseSink::Finish(const ExchangeSummary& summary) {
  response_.attempts = summary.attempts;
  response_.upstream_time = summary.upstream_time;
  response_.retry_wait = summary.retry_wait;
  return std::move(response_);
}

bool WholeResponseSink::Reserve(size_t capacity) {
  std::string& body = response_.body;
  if (capacity <= body.capacity()) return true;
  const size_t more = capacity - body.capacity();
  if (budget_ != nullptr && !budget_->Grow(more)) {
    abort_ = budget_->budget()->Exhausted(
        absl::StrCat(origin_, ": response body").c_str(), more);
    return false;
  }
  body.reserve(capacity);
  return true;
}

}  // namespace egress
