#include "service/api/egress_service.h"

#include <google/protobuf/arena.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "proto/egress/v1/request_forms.h"
#include "service/api/response_proto.h"
#include "service/api/status_mapping.h"
#include "service/base/defaults.h"
#include "service/base/error_details.h"
#include "service/pool/whole_response.h"

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

  CallContext& record() { return record_; }
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
    WholeResponseSink sink(service_.options_.max_response_bytes,
                           call.request->origin.Key(), budget_.get());
    absl::StatusOr<ExchangeSummary> done =
        worker.Perform(service_.PlanFor(call, canceller_), sink);
    service_.RecordVerdict(call, done.status(), sink.http_status());
    if (!done.ok()) return Answer(done.status());
    UpstreamResponse result = sink.Finish(*done);
    record_.attempts = result.attempts;
    record_.reused = result.connection_reused;
    record_.http_status = result.status;
    const std::string origin = service_.metrics_.labels_origins()
                                   ? call.request->origin.Key()
                                   : std::string();
    service_.metrics_.RecordUpstreamSeconds(origin, RpcKind::kDo,
                                            Seconds(result.upstream_time));
    service_.metrics_.RecordFirstByteSeconds(origin, RpcKind::kDo,
                                             Seconds(result.first_byte_time));
    ToResponseProto(std::move(result), CallTiming{queued, nanoseconds(0)},
                    response_);
    Answer(absl::OkStatus());
  }

 private:
  EgressService& service_;
  grpc::CallbackServerContext& context_;
  egress::v1::DoResponse& response_;
  CallContext record_;
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

  CallContext& record() { return record_; }
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
    CallPlan plan = service_.PlanFor(call, canceller_);
    plan.idle_timeout = service_.options_.stream_idle_timeout;
    absl::StatusOr<ExchangeSummary> result = worker.Perform(plan, *this);
    service_.RecordVerdict(call, result.status(), record_.http_status);
    if (result.ok()) {
      service_.metrics_.RecordUpstreamSeconds(origin_, RpcKind::kDoStream,
                                              Seconds(result->upstream_time));
    } else if (auto reason = pump_.AbandonReason(result.status())) {
      service_.metrics_.RecordStreamAbort(*reason);
    }
    pump_.FinishWhenDrained(result.status());
  }

  // ResponseSink (the worker).
  bool OnHead(UpstreamHead head, std::optional<uint64_t>) override {
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
  absl::Status AbortStatus() const override { return pump_.abort_status(); }

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
  CallContext record_;     // written by the worker until it finishes
  nanoseconds queued_{0};  // written by the worker before streaming starts
  std::string origin_;     // likewise
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
      }()),
      caller_rate_([&options]() -> std::optional<RateLimit> {
        if (options.caller_rate.empty()) return std::nullopt;
        absl::StatusOr<RateLimit> limit =
            ParseRateLimit(options.caller_rate, 0);
        if (!limit.ok()) return std::nullopt;
        return *limit;
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
                                               const UpstreamHead& answer,
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

void EgressService::RecordVerdict(const Admitted& call,
                                  const absl::Status& status, int http_status) {
  OutlierEjection* ejection = options_.admission.ejection;
  if (ejection == nullptr || call.route == nullptr) return;
  ejection->Record(call.request->origin.Key(), call.route->ejection,
                   VerdictOf(status, http_status));
}

CallPlan EgressService::PlanFor(const Admitted& call,
                                ExchangeCanceller& canceller) {
  CallPlan plan{*call.request, call.deadline, canceller};
  if (call.route != nullptr && call.route->own_sessions) {
    plan.session_options = &call.route->session;
  }
  // Most calls do not opt in to Retry-After retries: nothing to decide.
  if (call.request->retry.max_attempts > 1) {
    plan.decide_retry = [this, &call](const UpstreamHead& head, int answers) {
      return DecideAnswerRetry(*call.request, head, answers, call.deadline);
    };
  }
  return plan;
}

absl::StatusOr<MonoTime> EgressService::TakeRateTurn(
    const Admitted& call, const std::string& identity) {
  const OriginRoute* route = call.route.get();
  const bool by_origin = route != nullptr && route->rate_limit.has_value();
  const bool by_caller = caller_rate_.has_value();
  if (options_.rates == nullptr || (!by_origin && !by_caller)) {
    return MonoTime{};  // no limit: no turn to wait for
  }
  const MonoTime now = clock_.Now();
  const std::chrono::nanoseconds max_wait =
      by_origin && route->rate_max_wait.has_value() ? *route->rate_max_wait
                                                    : options_.rate_max_wait;
  const MonoTime latest = std::min(call.deadline.at(), now + max_wait);
  const std::string origin = call.request->origin.Key();
  // Refused: when its turn would come, later than it may wait.
  auto refuse = [&](const std::string& over, const RateLimit& limit,
                    const std::string& limit_name, MonoTime turn) {
    return WithRetryDelay(
        WithReason(
            absl::ResourceExhaustedError(absl::StrFormat(
                "%s is over its rate limit (%s: %g calls/s, burst %d); its "
                "turn would come in %.3fs, later than it may wait (%.3fs); "
                "the upstream was not contacted",
                over, limit_name, limit.per_second, limit.burst,
                Seconds(turn - now), Seconds(latest - now))),
            ErrorReason::kRateLimited,
            {{"origin", origin},
             {"caller", by_caller ? identity : ""},
             {"limit", limit_name}}),
        turn - now);
  };
  // The `origin` label: origins with an entry (they bound the labels).
  const std::string label = route != nullptr ? origin : std::string();
  RateDecision by_entry;
  if (by_origin) {
    by_entry =
        options_.rates->Reserve("origin " + origin, *route->rate_limit, latest);
    if (!by_entry.reserved) {
      metrics_.RecordRateLimited(label, LimitKind::kOrigin, false);
      return refuse("origin " + origin, *route->rate_limit,
                    "rate_limit of " + route->entry, by_entry.at);
    }
    if (by_entry.at > now) {
      metrics_.RecordRateLimited(label, LimitKind::kOrigin, true);
    }
  }
  MonoTime turn = by_origin ? by_entry.at : now;
  if (by_caller) {
    RateDecision own =
        options_.rates->Reserve("caller " + identity, *caller_rate_, latest);
    if (!own.reserved) {
      if (by_origin) {
        options_.rates->Unreserve("origin " + origin, *route->rate_limit,
                                  by_entry);
      }
      metrics_.RecordRateLimited(label, LimitKind::kCaller, false);
      return refuse("caller " + identity, *caller_rate_,
                    "--rate_limit_per_caller", own.at);
    }
    if (own.at > now) {
      metrics_.RecordRateLimited(label, LimitKind::kCaller, true);
    }
    turn = std::max(turn, own.at);
  }
  return turn;
}

template <typename CallT>
void EgressService::Start(CallT* call, const egress::v1::DoRequest& request,
                          egress::v1::DoRequest* owned,
                          const grpc::CallbackServerContext& context,
                          Admission::Rpc rpc) {
  absl::StatusOr<Admitted> admitted =
      admission_.Admit(request, owned, context, rpc, call->record());
  if (!admitted.ok()) return call->Answer(admitted.status());
  // Its turn under its origin's and its caller's rate limits: now, later (it
  // waits in the limits' care, holding no worker), or refused.
  absl::StatusOr<MonoTime> turn =
      TakeRateTurn(*admitted, call->record().identity);
  if (!turn.ok()) return call->Answer(turn.status());
  // Every admitted call earns the retry budget its share.
  if (options_.retry_budget != nullptr) options_.retry_budget->OnCall();
  // With its origin's and caller's slots, to the workers; until then it waits
  // in that origin's or caller's queue, holding no worker.
  // The admitted call moves from here to the slot's callback to the worker's
  // task: none of them is copied.
  const std::string origin = admitted->request->origin.Key();
  const size_t caller_limit = admitted->caller_limit;
  const Deadline deadline = admitted->deadline;
  const std::optional<size_t> origin_limit =
      admitted->route != nullptr ? admitted->route->max_inflight : std::nullopt;
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
                           deadline, std::move(begin), &call->waiting_id(),
                           origin_limit, *turn);
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
