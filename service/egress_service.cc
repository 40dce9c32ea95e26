#include "service/egress_service.h"

#include <google/protobuf/arena.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "proto/egress/v1/request_forms.h"
#include "service/defaults.h"
#include "service/error_details.h"
#include "service/response_proto.h"
#include "service/status_mapping.h"

namespace egress {
namespace {

using std::chrono::nanoseconds;

// The caller's x-request-id, traceparent and tracestate metadata, those it
// sent. (Views into the metadata, which outlives the call's Begin.)
CallerTrace CallerTraceOf(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  const auto find =
      [&metadata](const char* key) -> std::optional<absl::string_view> {
    auto it = metadata.find(key);
    if (it == metadata.end()) return std::nullopt;
    return absl::string_view(it->second.data(), it->second.size());
  };
  return CallerTrace{find("x-request-id"), find("traceparent"),
                     find("tracestate")};
}

// Waits as an answer's Retry-After asked; CANCELLED when the call goes away
// meanwhile.
absl::Status WaitToRetry(ExchangeCanceller& canceller, nanoseconds wait) {
  if (canceller.WaitFor(wait)) return absl::OkStatus();
  return absl::CancelledError(
      "the call was cancelled while waiting to retry (Retry-After)");
}

// Do's messages, new for each call and deleted when gRPC releases them. Both
// live on an arena whose first block is part of this object: a call's
// request, response, headers and timing cost one allocation, and freeing them
// is one delete (a body's bytes are moved in and out, never copied).
class DoMessages final : public grpc::MessageHolder<egress::v1::DoRequest,
                                                    egress::v1::DoResponse> {
 public:
  DoMessages() : arena_(ArenaOptionsFor(first_block_)) {
    set_request(
        google::protobuf::Arena::CreateMessage<egress::v1::DoRequest>(&arena_));
    set_response(google::protobuf::Arena::CreateMessage<egress::v1::DoResponse>(
        &arena_));
  }
  void Release() override { delete this; }

 private:
  // Enough for a typical call (a response with a dozen headers); the arena
  // takes more blocks from the heap when a call needs them.
  static constexpr size_t kFirstBlockBytes = 2048;
  static google::protobuf::ArenaOptions ArenaOptionsFor(char* block) {
    google::protobuf::ArenaOptions options;
    options.initial_block = block;
    options.initial_block_size = kFirstBlockBytes;
    return options;
  }
  alignas(8) char first_block_[kFirstBlockBytes];
  google::protobuf::Arena arena_;
};

}  // namespace

grpc::MessageHolder<egress::v1::DoRequest, egress::v1::DoResponse>*
EgressService::DoAllocator::AllocateMessages() {
  return new DoMessages;
}

// One Do call in flight: what is needed to answer it, from whichever thread.
// A caller that cancels (or whose deadline passes) aborts the upstream
// exchange at once, so the worker is free for the next call.
//
// Lifetime: deletes itself in OnDone, after Finish.
class EgressService::Call final : public grpc::ServerUnaryReactor {
 public:
  Call(EgressService& service, grpc::CallbackServerContext& context,
       egress::v1::DoResponse& response)
      : service_(service), context_(context), response_(response) {
    service_.log_.Begin(CallerTraceOf(context), service_.clock_.Now(), record_);
  }

  CallRecord& record() { return record_; }
  InflightSlot& slot() { return slot_; }
  std::unique_ptr<BudgetLease>& budget() { return budget_; }
  std::atomic<uint64_t>& waiting_id() { return waiting_id_; }

  // Answers the call with `status` (the response as filled so far when OK)
  // and records it. Called once; the Call must not be touched afterwards.
  void Answer(const absl::Status& status) {
    const nanoseconds total = service_.log_.Complete(record_, status);
    if (status.ok()) {
      SetDuration(total, *response_.mutable_timing()->mutable_total());
    }
    // On a worker, all that is left is to answer: become idle first, so that
    // the caller's next call finds this warm worker (no-op elsewhere), and so
    // that a call this slot lets in does too.
    WorkerPool<EgressWorker>::ReleaseCurrentWorker();
    slot_.Release();
    Finish(ToGrpcStatus(status));
  }

  void OnCancel() override {
    const auto start = service_.clock_.Now();
    // A call still waiting for its origin's or caller's slot is answered now.
    if (const uint64_t id = waiting_id_.load(); id != 0) {
      service_.options_.limits->Cancel(id);
    }
    canceller_.Cancel();
    service_.metrics_.RecordCancelCallbackSeconds(
        Seconds(service_.clock_.Now() - start));
  }
  void OnDone() override { delete this; }

  // Runs on a worker: performs the exchange and answers.
  void Run(EgressWorker& worker, const Admitted& call) {
    const nanoseconds queued = service_.clock_.Now() - record_.start;
    absl::Status taken =
        service_.admission_.CheckTaken(context_, call.deadline, queued);
    if (!taken.ok()) return Answer(taken);
    // Answers that ask for a retry (Retry-After), when the call opted in.
    const size_t held_before = budget_ != nullptr ? budget_->held() : 0;
    int attempts = 0;
    nanoseconds upstream{0}, waited{0};
    absl::StatusOr<UpstreamResponse> result;
    for (int answers = 1;; ++answers) {
      result = worker.Perform(*call.request, call.deadline, canceller_,
                              budget_.get());
      if (!result.ok()) return Answer(result.status());
      attempts += result->attempts;
      upstream += result->upstream_time;
      const RetryDecision retry = service_.DecideAnswerRetry(
          *call.request, *result, answers, call.deadline);
      if (retry.outcome != RetryOutcome::kRetry) break;
      // This answer is dropped: its body's bytes go back to the budget.
      result->body = std::string();
      if (budget_ != nullptr) budget_->Shrink(budget_->held() - held_before);
      if (absl::Status waited_out = WaitToRetry(canceller_, retry.wait);
          !waited_out.ok()) {
        return Answer(waited_out);
      }
      waited += retry.wait;
    }
    result->attempts = attempts;
    result->upstream_time = upstream;
    result->retry_wait = waited;
    record_.attempts = result->attempts;
    record_.reused = result->connection_reused;
    record_.http_status = result->status;
    const std::string origin = service_.metrics_.labels_origins()
                                   ? call.request->origin.Key()
                                   : std::string();
    service_.metrics_.RecordUpstreamSeconds(origin, RpcKind::kDo,
                                            Seconds(result->upstream_time));
    service_.metrics_.RecordFirstByteSeconds(origin, RpcKind::kDo,
                                             Seconds(result->first_byte_time));
    ToResponseProto(*std::move(result), CallTiming{queued, nanoseconds(0)},
                    response_);
    Answer(absl::OkStatus());
  }

 private:
  EgressService& service_;
  grpc::CallbackServerContext& context_;
  egress::v1::DoResponse& response_;
  CallRecord record_;
  ExchangeCanceller canceller_;
  InflightSlot slot_;  // held from the start of the exchange to the answer
  std::atomic<uint64_t> waiting_id_{0};  // while it waits for a slot
  // Until OnDone: the response body lives in response_ until then.
  std::unique_ptr<BudgetLease> budget_;
};

// One DoStream call: the gRPC write reactor, the ResponseSink of the upstream
// exchange, and the StreamPump's Writer. The worker pushes the response in
// (OnHead, OnBody); the pump decides when gRPC writes (see stream_pump.h).
//
// Lifetime: deletes itself in OnDone, which gRPC calls after Finish and the
// last OnWriteDone.
class EgressService::StreamCall final
    : public grpc::ServerWriteReactor<egress::v1::DoStreamResponse>,
      public ResponseSink,
      public StreamPump::Writer {
 public:
  StreamCall(EgressService& service, grpc::CallbackServerContext& context)
      : service_(service),
        context_(context),
        pump_(*this, service.clock_, service.pump_limits_) {
    service_.log_.Begin(CallerTraceOf(context), service_.clock_.Now(), record_);
  }

  CallRecord& record() { return record_; }
  InflightSlot& slot() { return slot_; }
  std::unique_ptr<BudgetLease>& budget() { return budget_; }
  std::atomic<uint64_t>& waiting_id() { return waiting_id_; }

  // Answers at once (the call failed before streaming).
  void Answer(const absl::Status& status) { pump_.FinishWhenDrained(status); }

  // Runs on a worker: performs the exchange, streaming, then finishes.
  void Run(EgressWorker& worker, const Admitted& call) {
    queued_ = service_.clock_.Now() - record_.start;
    absl::Status taken =
        service_.admission_.CheckTaken(context_, call.deadline, queued_);
    if (!taken.ok()) return Answer(taken);
    pump_.SetDeadline(call.deadline);
    if (service_.metrics_.labels_origins()) {
      origin_ = call.request->origin.Key();
    }
    request_ = call.request.get();
    deadline_ = &call.deadline;
    absl::StatusOr<UpstreamResponse> result;
    for (;;) {
      result = worker.Stream(*call.request, call.deadline,
                             service_.options_.stream_idle_timeout, *this,
                             canceller_);
      if (retry_wait_ == nanoseconds::zero()) break;
      // OnHead dropped an answer that asked for a retry.
      const nanoseconds wait = std::exchange(retry_wait_, nanoseconds::zero());
      if (absl::Status waited_out = WaitToRetry(canceller_, wait);
          !waited_out.ok()) {
        result = waited_out;
        break;
      }
      waited_ += wait;
    }
    if (result.ok()) {
      service_.metrics_.RecordUpstreamSeconds(origin_, RpcKind::kDoStream,
                                              Seconds(result->upstream_time));
    } else if (auto reason = pump_.AbandonReason(result.status())) {
      service_.metrics_.RecordStreamAbort(*reason);
    }
    pump_.FinishWhenDrained(result.status());
  }

  // ResponseSink (the worker).
  bool OnHead(UpstreamResponse head, std::optional<uint64_t>) override {
    ++answers_;
    attempts_ += head.attempts;
    const RetryDecision retry =
        service_.DecideAnswerRetry(*request_, head, answers_, *deadline_);
    if (retry.outcome == RetryOutcome::kRetry) {
      // Not sent: the exchange is abandoned and Run tries again.
      retry_wait_ = std::max(retry.wait, nanoseconds(1));
      return false;
    }
    head.attempts = attempts_;
    head.retry_wait = waited_;
    record_.http_status = head.status;
    record_.attempts = head.attempts;
    record_.reused = head.connection_reused;
    service_.metrics_.RecordFirstByteSeconds(origin_, RpcKind::kDoStream,
                                             Seconds(head.first_byte_time));
    ToHeadProto(std::move(head),
                CallTiming{queued_, service_.clock_.Now() - record_.start},
                *out_.mutable_head());
    if (!pump_.StartHead()) return false;
    StartWrite(&out_);
    return true;
  }
  bool OnBody(const char* data, size_t size) override {
    return pump_.Push(data, size);
  }
  absl::Status AbortStatus() const override {
    if (retry_wait_ > nanoseconds::zero()) {
      return absl::AbortedError("answer dropped to retry after Retry-After");
    }
    return pump_.abort_status();
  }

  // StreamPump::Writer: one write at a time, so out_ is never shared.
  void StartBodyWrite(std::string bytes) override {
    out_.Clear();
    out_.set_body(std::move(bytes));
    StartWrite(&out_);
  }
  void Finish(const absl::Status& status) override {
    // On a worker, become idle before answering (see Call::Answer).
    WorkerPool<EgressWorker>::ReleaseCurrentWorker();
    slot_.Release();
    ServerWriteReactor::Finish(ToGrpcStatus(status));
  }

  // Reactor (gRPC's threads).
  void OnWriteDone(bool ok) override { pump_.OnWriteDone(ok); }
  void OnCancel() override {
    const auto start = service_.clock_.Now();
    if (const uint64_t id = waiting_id_.load(); id != 0) {
      service_.options_.limits->Cancel(id);
    }
    const bool expired =
        service_.admission_.GrpcRemaining(context_) <= nanoseconds::zero();
    pump_.Cancel(expired ? absl::DeadlineExceededError(
                               "the call's deadline passed while streaming; "
                               "upstream request abandoned")
                         : absl::CancelledError(
                               "the caller cancelled the stream; upstream "
                               "request abandoned"));
    // Wakes a worker blocked on the upstream socket, not only one in the pump.
    canceller_.Cancel();
    service_.metrics_.RecordCancelCallbackSeconds(
        Seconds(service_.clock_.Now() - start));
  }
  void OnDone() override {
    // The fields of record_ were written by the worker before it finished.
    service_.log_.Complete(record_, pump_.status());
    delete this;
  }

 private:
  EgressService& service_;
  grpc::CallbackServerContext& context_;
  CallRecord record_;      // written by the worker until it finishes
  nanoseconds queued_{0};  // written by the worker before streaming starts
  std::string origin_;     // likewise
  // The worker's, while it runs the call: the request, its deadline, and the
  // Retry-After retries so far.
  const UpstreamRequest* request_ = nullptr;
  const Deadline* deadline_ = nullptr;
  int answers_ = 0;
  int attempts_ = 0;
  nanoseconds waited_{0};
  nanoseconds retry_wait_{0};  // set by OnHead when the answer is retried
  egress::v1::DoStreamResponse out_;  // the write in flight
  StreamPump pump_;
  ExchangeCanceller canceller_;
  InflightSlot slot_;  // held from the start of the exchange to the answer
  std::atomic<uint64_t> waiting_id_{0};  // while it waits for a slot
  // Until OnDone: the pump's buffers drain after the worker is done.
  std::unique_ptr<BudgetLease> budget_;
};

EgressService::EgressService(const ServiceOptions& options,
                             WorkerPool<EgressWorker>& pool, Metrics& metrics,
                             const Clock& clock)
    : options_(options),
      pool_(pool),
      metrics_(metrics),
      clock_(clock),
      admission_(options.admission, clock),
      log_(metrics, clock, options.access_log),
      pump_limits_([&options] {
        StreamPump::Limits limits;
        limits.idle_timeout = options.stream_idle_timeout;
        limits.max_bytes = options.max_stream_bytes;
        return limits;
      }()) {
  SetMessageAllocatorFor_Do(&do_allocator_);
}

absl::Status EgressService::Submit(WorkerPool<EgressWorker>::Task task) {
  if (pool_.TrySubmit(std::move(task))) return absl::OkStatus();
  return WithRetryDelay(
      WithReason(absl::ResourceExhaustedError(absl::StrFormat(
                     "queue full: %d calls already wait for a worker "
                     "(--max_queue); retry with backoff",
                     pool_.QueueDepth())),
                 ErrorReason::kQueueFull, {{"limit", "--max_queue"}}),
      defaults::kBusyRetryDelay);
}

RetryDecision EgressService::DecideAnswerRetry(const UpstreamRequest& request,
                                               const UpstreamResponse& answer,
                                               int answers,
                                               const Deadline& deadline) {
  // Most calls do not opt in: no clock is read for them.
  if (request.retry.max_attempts <= 1) return RetryDecision{};
  const RetryDecision decision =
      DecideRetry(request, answer.status, answer.headers, answers,
                  deadline.Remaining(), absl::Now(), options_.retry_budget);
  if (decision.outcome != RetryOutcome::kNotAsked) {
    metrics_.RecordAnswerRetry(decision.outcome);
  }
  return decision;
}

template <typename CallT>
void EgressService::Start(CallT* call, const egress::v1::DoRequest& request,
                          egress::v1::DoRequest* owned,
                          const grpc::CallbackServerContext& context,
                          Admission::Rpc rpc) {
  absl::StatusOr<Admitted> admitted =
      admission_.Admit(request, owned, context, rpc, call->record());
  if (!admitted.ok()) return call->Answer(admitted.status());
  // Every admitted call earns the retry budget its share.
  if (options_.retry_budget != nullptr) options_.retry_budget->OnCall();
  // With its origin's and caller's slots, to the workers; until then it waits
  // in that origin's or caller's queue, holding no worker.
  // The admitted call moves from here to the slot's callback to the worker's
  // task: none of them is copied.
  const std::string origin = admitted->request->origin.Key();
  const size_t caller_limit = admitted->caller_limit;
  const Deadline deadline = admitted->deadline;
  auto begin = [this, call, admitted = *std::move(admitted)](
                   absl::StatusOr<InflightSlot> slot) mutable {
    if (!slot.ok()) return call->Answer(slot.status());
    call->slot() = *std::move(slot);
    call->budget() = std::move(admitted.budget);
    absl::Status submitted =
        Submit([call, admitted = std::move(admitted)](EgressWorker& worker) {
          call->Run(worker, admitted);
        });
    if (!submitted.ok()) call->Answer(submitted);
  };
  if (options_.limits == nullptr) return begin(InflightSlot());
  // After this, `call` may already be answered and gone: do not touch it.
  options_.limits->Acquire(origin, call->record().identity, caller_limit,
                           deadline, std::move(begin), &call->waiting_id());
}

grpc::ServerUnaryReactor* EgressService::Do(
    grpc::CallbackServerContext* context, const egress::v1::DoRequest* request,
    egress::v1::DoResponse* response) {
  auto* call = new Call(*this, *context, *response);
  // The request is the one DoAllocator made, which the service owns.
  auto* messages = static_cast<
      grpc::MessageHolder<egress::v1::DoRequest, egress::v1::DoResponse>*>(
      context->GetRpcAllocatorState());
  egress::v1::DoRequest* owned =
      messages != nullptr && messages->request() == request
          ? messages->request()
          : nullptr;
  Start(call, *request, owned, *context, Admission::Rpc::kDo);
  return call;
}

grpc::ServerWriteReactor<egress::v1::DoStreamResponse>* EgressService::DoStream(
    grpc::CallbackServerContext* context,
    const egress::v1::DoStreamRequest* request) {
  auto* call = new StreamCall(*this, *context);
  // gRPC's request is const (no allocator for streaming methods): its body is
  // copied once here, and moved from then on.
  egress::v1::DoRequest owned =
      egress::v1::RequestAs<egress::v1::DoRequest>(*request);
  Start(call, owned, &owned, *context, Admission::Rpc::kDoStream);
  return call;
}

}  // namespace egress
