#include "service/egress_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/log.h"
#include "service/status_mapping.h"

namespace egress {
namespace {

using std::chrono::nanoseconds;

void SetDuration(nanoseconds d, google::protobuf::Duration& out) {
  out.set_seconds(d.count() / 1000000000);
  out.set_nanos(static_cast<int32_t>(d.count() % 1000000000));
}

double Seconds(nanoseconds d) { return static_cast<double>(d.count()) / 1e9; }

// Time left before the call's gRPC deadline, or nanoseconds::max() without one.
nanoseconds RemainingGrpcTime(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  const auto now = std::chrono::system_clock::now();
  // gRPC reports "no deadline" as a time centuries away.
  if (deadline - now > std::chrono::hours(24 * 365 * 100)) {
    return nanoseconds::max();
  }
  return std::chrono::duration_cast<nanoseconds>(deadline - now);
}

}  // namespace

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

void ToResponseProto(UpstreamResponse&& from, nanoseconds queued,
                     egress::v1::EgressResponse& to) {
  to.set_status(from.status);
  to.mutable_headers()->Reserve(static_cast<int>(from.headers.size()));
  for (auto& [name, value] : from.headers) {
    AddHeader(std::move(name), std::move(value), *to.mutable_headers());
  }
  to.set_body(std::move(from.body));
  egress::v1::Timing& timing = *to.mutable_timing();
  timing.set_connection_reused(from.connection_reused);
  timing.set_attempts(from.attempts);
  SetDuration(queued, *timing.mutable_queued());
  SetDuration(from.upstream_time, *timing.mutable_upstream());
}

// One Do call in flight: what is needed to answer it, from whichever thread.
// A caller that cancels (or whose deadline passes) aborts the upstream
// exchange at once, so the worker is free for the next call.
//
// Lifetime: deletes itself in OnDone, after Finish.
class EgressService::Call final : public grpc::ServerUnaryReactor {
 public:
  Call(EgressService& service, grpc::CallbackServerContext& context,
       egress::v1::EgressResponse& response, MonoTime start)
      : service_(service), context_(context), response_(response) {
    service_.Begin(context, start, record_);
  }

  CallRecord& record() { return record_; }

  // Answers the call with `status` (the response as filled so far when OK)
  // and records it. Called once; the Call must not be touched afterwards.
  void Finish(const absl::Status& status, int http_status) {
    record_.http_status = http_status;
    const nanoseconds total = service_.Complete(record_, status);
    if (status.ok()) {
      SetDuration(total, *response_.mutable_timing()->mutable_total());
    }
    // On a worker, all that is left is to answer: become idle first, so that
    // the caller's next call finds this warm worker (no-op elsewhere).
    WorkerPool<EgressWorker>::ReleaseCurrentWorker();
    ServerUnaryReactor::Finish(ToGrpcStatus(status));
  }

  void OnCancel() override { canceller_.Cancel(); }
  void OnDone() override { delete this; }

  // Runs on a worker: performs the exchange and answers.
  void Run(EgressWorker& worker, const UpstreamRequest& request,
           MonoTime deadline) {
    const nanoseconds queued = service_.clock_.Now() - record_.start;
    absl::Status taken = service_.CheckTaken(context_, queued, deadline);
    if (!taken.ok()) {
      Finish(taken, 0);
      return;
    }
    absl::StatusOr<UpstreamResponse> result =
        worker.Perform(request, deadline, canceller_);
    if (result.ok()) {
      record_.attempts = result->attempts;
      record_.reused = result->connection_reused;
    }
    if (!result.ok()) {
      Finish(result.status(), 0);
      return;
    }
    service_.metrics_.RecordUpstreamSeconds(Seconds(result->upstream_time));
    const int http_status = result->status;
    ToResponseProto(*std::move(result), queued, response_);
    Finish(absl::OkStatus(), http_status);
  }

 private:
  EgressService& service_;
  grpc::CallbackServerContext& context_;
  egress::v1::EgressResponse& response_;
  CallRecord record_;
  ExchangeCanceller canceller_;
};

// One DoStream call: a write reactor that is also the ResponseSink of the
// upstream exchange. The worker pushes the response in (OnHead, OnBody); gRPC
// pulls it out one write at a time (OnWriteDone).
//
// Flow control: at most one write in flight and less than kMaxChunk bytes
// pending. When both are taken, OnBody blocks the worker, which stops reading
// the upstream, whose TCP window then closes: memory per stream is bounded
// whatever the body size. A write is started the moment bytes arrive and none
// is in flight, so an event is forwarded as soon as the upstream sends it.
//
// Lifetime: the object deletes itself in OnDone. Finish is called exactly once,
// by whichever comes last of the worker's FinishWhenDrained and the last
// OnWriteDone; after that neither touches the object.
class EgressService::StreamCall final
    : public grpc::ServerWriteReactor<egress::v1::EgressResponseChunk>,
      public AbortableSink {
 public:
  static constexpr size_t kMaxChunk = 64 << 10;

  StreamCall(EgressService& service, grpc::CallbackServerContext& context,
             MonoTime start)
      : service_(service), context_(context) {
    service_.Begin(context, start, record_);
  }

  CallRecord& record() { return record_; }

  // Runs on a worker: performs the exchange, streaming, then finishes.
  void Run(EgressWorker& worker, const UpstreamRequest& request,
           MonoTime deadline) {
    queued_ = service_.clock_.Now() - record_.start;
    absl::Status taken = service_.CheckTaken(context_, queued_, deadline);
    if (!taken.ok()) {
      FinishWhenDrained(taken);
      return;
    }
    // Waits for a slow caller are measured on real time, like the sockets.
    real_deadline_ =
        std::chrono::steady_clock::now() + (deadline - service_.clock_.Now());
    absl::StatusOr<UpstreamResponse> result = worker.Stream(
        request, deadline, service_.options_.stream_idle_timeout, *this);
    if (result.ok()) {
      service_.metrics_.RecordUpstreamSeconds(Seconds(result->upstream_time));
    } else if (const char* reason = AbandonReason(result.status())) {
      service_.metrics_.RecordStreamAbort(reason);
    }
    FinishWhenDrained(result.status());
  }

  // Answers with `status` once every pending byte is written (at once when the
  // call failed before streaming). Called once, by the worker or by Do.
  void FinishWhenDrained(const absl::Status& status) {
    std::unique_lock<std::mutex> lock(mu_);
    status_ = status;
    final_status_ = ToGrpcStatus(status);
    if (cancelled_) pending_.clear();
    if (write_in_flight_) {
      finish_requested_ = true;  // OnWriteDone finishes
      return;
    }
    if (!pending_.empty()) {
      PrepareWriteLocked();
      finish_requested_ = true;
      lock.unlock();
      StartWrite(&out_);
      return;
    }
    lock.unlock();
    // On a worker, become idle before answering (see Call::Finish).
    WorkerPool<EgressWorker>::ReleaseCurrentWorker();
    Finish(final_status_);
  }

  // AbortableSink.
  ExchangeCanceller& canceller() override { return canceller_; }

  bool OnHead(UpstreamResponse head) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (cancelled_) return Abandon(Cancelled(), "cancelled");
    record_.http_status = head.status;
    record_.attempts = head.attempts;
    record_.reused = head.connection_reused;
    egress::v1::EgressResponseHead& out = *out_.mutable_head();
    out.set_status(head.status);
    for (auto& [name, value] : head.headers) {
      AddHeader(std::move(name), std::move(value), *out.mutable_headers());
    }
    egress::v1::Timing& timing = *out.mutable_timing();
    timing.set_connection_reused(head.connection_reused);
    timing.set_attempts(head.attempts);
    SetDuration(queued_, *timing.mutable_queued());
    SetDuration(head.upstream_time, *timing.mutable_upstream());
    SetDuration(service_.clock_.Now() - record_.start, *timing.mutable_total());
    write_in_flight_ = true;  // nothing was written before the head
    lock.unlock();
    StartWrite(&out_);
    return true;
  }

  bool OnBody(const char* data, size_t size) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (cancelled_ || write_failed_) return Abandon(Cancelled(), "cancelled");
    streamed_ += size;
    const size_t limit = service_.options_.max_stream_bytes;
    if (limit > 0 && streamed_ > limit) {
      return Abandon(absl::ResourceExhaustedError(absl::StrFormat(
                         "stream is over --max_stream_bytes=%d", limit)),
                     "too_large");
    }
    pending_.append(data, size);
    // Backpressure: the worker waits while a write is in flight and a full
    // chunk is already pending.
    const auto idle = service_.options_.stream_idle_timeout;
    while (write_in_flight_ && pending_.size() >= kMaxChunk) {
      const auto wake =
          std::min(real_deadline_, std::chrono::steady_clock::now() + idle);
      if (cv_.wait_until(lock, wake) == std::cv_status::timeout &&
          write_in_flight_ && std::chrono::steady_clock::now() >= wake) {
        return Abandon(
            absl::DeadlineExceededError(absl::StrFormat(
                "the caller read nothing for %.3fs (--stream_idle_timeout or "
                "deadline)",
                Seconds(std::chrono::duration_cast<nanoseconds>(idle)))),
            "slow_reader");
      }
      if (cancelled_ || write_failed_) return Abandon(Cancelled(), "cancelled");
    }
    if (write_in_flight_) return true;
    PrepareWriteLocked();
    lock.unlock();
    StartWrite(&out_);
    return true;
  }

  absl::Status AbortStatus() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return abort_status_;
  }

  // Reactor.
  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    write_in_flight_ = false;
    if (!ok) {
      write_failed_ = true;  // the call is gone: cancelled or broken
      pending_.clear();
    }
    const bool write_next = !pending_.empty();
    if (write_next) PrepareWriteLocked();
    const bool finish = !write_next && finish_requested_;
    cv_.notify_all();
    lock.unlock();
    if (write_next) {
      StartWrite(&out_);
    } else if (finish) {
      Finish(final_status_);
    }
  }

  void OnCancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      cv_.notify_all();
    }
    // Wakes a worker blocked on the upstream socket, not only one waiting here.
    canceller_.Cancel();
  }

  void OnDone() override {
    service_.Complete(record_, status_);
    delete this;
  }

 private:
  // Moves up to kMaxChunk pending bytes into the message to write.
  void PrepareWriteLocked() {
    const size_t n = std::min(pending_.size(), kMaxChunk);
    out_.Clear();
    out_.set_body(pending_.substr(0, n));
    pending_.erase(0, n);
    write_in_flight_ = true;
  }

  bool Abandon(absl::Status status, const char* reason) {
    abort_status_ = std::move(status);
    abort_reason_ = reason;
    return false;
  }

  absl::Status Cancelled() const {
    const bool expired =
        std::chrono::system_clock::now() >= context_.deadline();
    return expired ? absl::DeadlineExceededError(
                         "the call's deadline passed while streaming; upstream "
                         "request abandoned")
                   : absl::CancelledError(
                         "the caller cancelled the stream; upstream request "
                         "abandoned");
  }

  // The egress_stream_aborts_total reason when `status` ended an exchange
  // this call abandoned on purpose, else nullptr.
  const char* AbandonReason(const absl::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (abort_reason_ != nullptr) return abort_reason_;
    if (cancelled_ &&
        (absl::IsCancelled(status) || absl::IsDeadlineExceeded(status))) {
      return "cancelled";
    }
    return nullptr;
  }

  EgressService& service_;
  grpc::CallbackServerContext& context_;
  CallRecord record_;      // head fields written under mu_
  nanoseconds queued_{0};  // written by the worker before streaming starts
  std::chrono::steady_clock::time_point real_deadline_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  egress::v1::EgressResponseChunk out_;  // the write in flight; guarded by mu_
  std::string pending_;                  // guarded by mu_
  bool write_in_flight_ = false;         // guarded by mu_
  bool write_failed_ = false;            // guarded by mu_
  bool finish_requested_ = false;        // guarded by mu_
  std::atomic<bool> cancelled_{false};   // written under mu_
  size_t streamed_ = 0;                  // guarded by mu_
  absl::Status abort_status_;            // guarded by mu_
  const char* abort_reason_ = nullptr;   // guarded by mu_
  absl::Status status_ = absl::UnknownError("not finished");  // guarded by mu_
  grpc::Status final_status_;                                 // guarded by mu_

  ExchangeCanceller canceller_;
};

EgressService::EgressService(const ServiceOptions& options,
                             WorkerPool<EgressWorker>& pool, Metrics& metrics,
                             const Clock& clock)
    : options_(options), pool_(pool), metrics_(metrics), clock_(clock) {}

absl::Status EgressService::CheckTaken(
    const grpc::CallbackServerContext& context, nanoseconds queued,
    MonoTime deadline) const {
  if (clock_.Now() >= deadline) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "deadline expired after %.3fs waiting for a worker; the upstream was "
        "not contacted",
        Seconds(queued)));
  }
  if (context.IsCancelled()) {
    return absl::CancelledError("call cancelled before a worker took it");
  }
  return absl::OkStatus();
}

absl::StatusOr<EgressService::Admission> EgressService::Admit(
    const egress::v1::EgressRequest& request,
    const grpc::CallbackServerContext& context, nanoseconds default_timeout,
    CallRecord& record) const {
  // Labels only: Metrics folds anything but the standard methods into "OTHER".
  record.method = request.method().empty() ? "GET" : request.method();
  record.url = request.url();
  Caller caller{"anonymous", nullptr};
  if (options_.auth != nullptr) {
    absl::StatusOr<Caller> authenticated = options_.auth->Authenticate(context);
    if (!authenticated.ok()) return authenticated.status();
    caller = *std::move(authenticated);
  }
  record.identity = caller.identity;
  absl::StatusOr<UpstreamRequest> upstream =
      ValidateRequest(request, options_.limits);
  if (!upstream.ok()) return upstream.status();
  record.origin = upstream->origin.Key();
  // The request id travels upstream too, unless the caller set its own.
  if (std::none_of(upstream->headers.begin(), upstream->headers.end(),
                   [](const auto& h) {
                     return absl::EqualsIgnoreCase(h.first, "X-Request-Id");
                   })) {
    upstream->headers.emplace_back("X-Request-Id", record.request_id);
  }
  if (options_.policy != nullptr) {
    absl::Status allowed = options_.policy->CheckHost(
        upstream->origin.host, caller.allowed_hosts.get());
    if (!allowed.ok()) return allowed;
  }
  // Upstream timeout: the smallest of the caller's timeout, the call's
  // remaining deadline and --max_timeout; `default_timeout` when the caller
  // gave neither.
  const nanoseconds remaining = RemainingGrpcTime(context);
  nanoseconds timeout = upstream->timeout.count() > 0     ? upstream->timeout
                        : remaining != nanoseconds::max() ? remaining
                                                          : default_timeout;
  timeout = std::min({timeout, remaining, options_.max_timeout});
  if (timeout <= nanoseconds::zero()) {
    return absl::DeadlineExceededError(
        "deadline expired before the call reached the service");
  }
  return Admission{std::make_shared<UpstreamRequest>(std::move(*upstream)),
                   record.start + timeout};
}

void EgressService::Begin(const grpc::CallbackServerContext& context,
                          MonoTime start, CallRecord& record) {
  record.start = start;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("x-request-id");
  if (it != metadata.end() && it->second.size() <= 128) {
    record.request_id = absl::CHexEscape(
        absl::string_view(it->second.data(), it->second.size()));
  } else {
    record.request_id =
        absl::StrFormat("%016x", request_ids_.fetch_add(1) ^ id_salt_);
  }
  metrics_.requests_in_flight().Increment();
}

nanoseconds EgressService::Complete(const CallRecord& r,
                                    const absl::Status& status) const {
  const nanoseconds total = clock_.Now() - r.start;
  metrics_.RecordCall(r.method, r.http_status, status.code(), Seconds(total));
  metrics_.requests_in_flight().Decrement();
  const std::string id = absl::StrCat("[", r.request_id, "] ");
  if (absl::IsPermissionDenied(status)) {
    metrics_.RecordPolicyDenied(PolicyReason(status));
    LogWarning(absl::StrCat(id, "policy: caller ", r.identity, " url ",
                            absl::CHexEscape(r.url.substr(0, 200)), ": ",
                            status.message()));
  } else if (absl::IsUnauthenticated(status)) {
    LogWarning(absl::StrCat(id, "auth: refused a call from ", r.identity, ": ",
                            status.message()));
  }
  if (options_.access_log) {
    LogInfo(absl::StrFormat(
        "%saccess caller=%s method=%s origin=%s outcome=%s status=%d "
        "duration_ms=%.3f attempts=%d reused=%s",
        id, r.identity, absl::CHexEscape(r.method.substr(0, 32)),
        r.origin.empty() ? "-" : r.origin, StatusCodeName(status.code()),
        r.http_status, Seconds(total) * 1000, r.attempts,
        r.reused ? "true" : "false"));
  }
  return total;
}

absl::Status EgressService::Submit(std::function<void(EgressWorker&)> task) {
  if (pool_.TrySubmit(std::move(task))) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrFormat("queue full: %d calls already wait for a worker "
                      "(--max_queue); retry with backoff",
                      pool_.QueueDepth()));
}

grpc::ServerUnaryReactor* EgressService::Do(
    grpc::CallbackServerContext* context,
    const egress::v1::EgressRequest* request,
    egress::v1::EgressResponse* response) {
  auto* call = new Call(*this, *context, *response, clock_.Now());
  absl::StatusOr<Admission> admitted =
      Admit(*request, *context, options_.default_timeout, call->record());
  if (!admitted.ok()) {
    call->Finish(admitted.status(), 0);
    return call;
  }
  absl::Status submitted =
      Submit([call, admitted = *std::move(admitted)](EgressWorker& worker) {
        call->Run(worker, *admitted.request, admitted.deadline);
      });
  if (!submitted.ok()) call->Finish(submitted, 0);
  return call;
}

grpc::ServerWriteReactor<egress::v1::EgressResponseChunk>*
EgressService::DoStream(grpc::CallbackServerContext* context,
                        const egress::v1::EgressRequest* request) {
  auto* call = new StreamCall(*this, *context, clock_.Now());
  // A stream's total time is bounded by --max_timeout when the caller gives
  // neither a timeout nor a deadline: long event streams are its normal case.
  absl::StatusOr<Admission> admitted =
      Admit(*request, *context, options_.max_timeout, call->record());
  if (!admitted.ok()) {
    call->FinishWhenDrained(admitted.status());
    return call;
  }
  absl::Status submitted =
      Submit([call, admitted = *std::move(admitted)](EgressWorker& worker) {
        call->Run(worker, *admitted.request, admitted.deadline);
      });
  if (!submitted.ok()) call->FinishWhenDrained(submitted);
  return call;
}

}  // namespace egress
