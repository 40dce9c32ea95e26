#include "service/pool/stream_pump.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "service/base/error_details.h"

namespace egress {

const char* StreamAbortReasonName(StreamAbortReason reason) {
  switch (reason) {
    case StreamAbortReason::kCancelled:
      return "cancelled";
    case StreamAbortReason::kSlowReader:
      return "slow_reader";
    case StreamAbortReason::kTooLarge:
      return "too_large";
  }
  return "cancelled";
}

StreamPump::StreamPump(Writer& writer, const Clock& clock, const Limits& limits)
    : writer_(writer), clock_(clock), limits_(limits) {}

void StreamPump::SetDeadline(const Deadline& deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  deadline_ = deadline;
}

bool StreamPump::RefuseLocked(absl::Status status, StreamAbortReason reason) {
  abort_status_ = std::move(status);
  abort_reason_ = reason;
  return false;
}

std::string StreamPump::NextChunkLocked() {
  const size_t n = std::min(pending_.size(), limits_.max_chunk);
  std::string chunk = pending_.substr(0, n);
  pending_.erase(0, n);
  write_in_flight_ = true;
  return chunk;
}

bool StreamPump::StartHead() {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) {
    return RefuseLocked(cancel_status_, StreamAbortReason::kCancelled);
  }
  write_in_flight_ = true;  // nothing was written before the head
  return true;
}

bool StreamPump::Push(const char* data, size_t size) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto gone = [this] { return cancelled_ || write_failed_; };
  if (gone()) {
    return RefuseLocked(cancel_status_, StreamAbortReason::kCancelled);
  }
  streamed_ += size;
  if (limits_.max_bytes > 0 && streamed_ > limits_.max_bytes) {
    return RefuseLocked(
        WithReason(
            absl::ResourceExhaustedError(absl::StrFormat(
                "stream is over --max_stream_bytes=%d", limits_.max_bytes)),
            ErrorReason::kResponseTooLarge,
            {{"limit",
              absl::StrCat("--max_stream_bytes=", limits_.max_bytes)}}),
        StreamAbortReason::kTooLarge);
  }
  pending_.append(data, size);
  // Backpressure: wait while a write is in flight and a full chunk is
  // already pending, for the caller no longer than the idle timeout.
  const MonoTime idle_end = clock_.Now() + limits_.idle_timeout;
  const MonoTime wake =
      deadline_ ? std::min(idle_end, deadline_->at()) : idle_end;
  while (write_in_flight_ && pending_.size() >= limits_.max_chunk) {
    const MonoTime now = clock_.Now();
    if (now >= wake) {
      return RefuseLocked(
          WithReason(absl::DeadlineExceededError(
                         absl::StrFormat("the caller read nothing for %.3fs "
                                         "(--stream_idle_timeout or deadline)",
                                         Seconds(limits_.idle_timeout))),
                     ErrorReason::kSlowReader),
          StreamAbortReason::kSlowReader);
    }
    ++workers_waiting_;
    cv_.wait_for(lock, wake - now);
    --workers_waiting_;
    if (gone()) {
      return RefuseLocked(cancel_status_, StreamAbortReason::kCancelled);
    }
  }
  if (write_in_flight_) return true;
  std::string chunk = NextChunkLocked();
  lock.unlock();
  writer_.StartBodyWrite(std::move(chunk));
  return true;
}

void StreamPump::FinishWhenDrained(const absl::Status& status) {
  std::unique_lock<std::mutex> lock(mu_);
  status_ = status;
  if (cancelled_) pending_.clear();
  finish_requested_ = true;
  if (write_in_flight_) return;  // OnWriteDone finishes
  if (!pending_.empty()) {
    std::string chunk = NextChunkLocked();
    lock.unlock();
    writer_.StartBodyWrite(std::move(chunk));
    return;
  }
  lock.unlock();
  writer_.Finish(status);
}

void StreamPump::OnWriteDone(bool ok) {
  std::unique_lock<std::mutex> lock(mu_);
  write_in_flight_ = false;
  if (!ok) {
    write_failed_ = true;  // the call is gone: cancelled or broken
    pending_.clear();
    // gRPC may report the failed write before OnCancel: the exchange is
    // abandoned either way, and never ends OK.
    if (!cancelled_) {
      cancel_status_ = absl::CancelledError(
          "the caller went away mid-stream; upstream request abandoned");
    }
  }
  cv_.notify_all();
  if (!pending_.empty()) {
    std::string chunk = NextChunkLocked();
    lock.unlock();
    writer_.StartBodyWrite(std::move(chunk));
    return;
  }
  if (!finish_requested_) return;
  const absl::Status status = status_;
  lock.unlock();
  writer_.Finish(status);
}

void StreamPump::Cancel(absl::Status why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return;
  cancelled_ = true;
  cancel_status_ = std::move(why);
  cv_.notify_all();
}

int StreamPump::workers_waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_waiting_;
}

absl::Status StreamPump::abort_status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return abort_status_;
}

std::optional<StreamAbortReason> StreamPump::AbandonReason(
    const absl::Status& result) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (abort_reason_) return abort_reason_;
  if (cancelled_ &&
      (absl::IsCancelled(result) || absl::IsDeadlineExceeded(result))) {
    return StreamAbortReason::kCancelled;
  }
  return std::nullopt;
}

absl::Status StreamPump::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

}  // namespace egress
