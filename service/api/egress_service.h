// EgressService: the gRPC side of egress.v1.EgressService: two reactors, and
// the hand-off to the workers.
//
// It runs on gRPC's callback threads and never blocks them. A call is logged
// (CallLog), admitted (Admission: caller, request, host policy, Deadline),
// and submitted to the WorkerPool, or refused at once when the queue is full.
// The worker that takes it performs the exchange on a pooled session and
// answers: Do with the whole response (ToResponseProto), DoStream through a
// StreamPump that carries the body to gRPC's writes with bounded memory.
// What each piece does is in its own header; ARCHITECTURE.md draws the path.
//
// Thread safety: thread-safe; one instance serves every call.
#pragma once

#include <grpcpp/support/message_allocator.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "proto/egress/v1/egress.grpc.pb.h"
#include "service/admission/admission.h"
#include "service/admission/inflight_limits.h"
#include "service/admission/rate_limits.h"
#include "service/api/call_log.h"
#include "service/base/clock.h"
#include "service/base/defaults.h"
#include "service/pool/answer_retry.h"
#include "service/pool/egress_worker.h"
#include "service/pool/stream_pump.h"
#include "service/pool/worker_pool.h"
#include "service/telemetry/metrics.h"

namespace egress {

struct ServiceOptions {
  AdmissionOptions admission;
  // DoStream: the longest wait for the upstream's next bytes, and for the
  // caller to take the previous ones.
  std::chrono::nanoseconds stream_idle_timeout = defaults::kStreamIdleTimeout;
  // DoStream: bytes after which the stream fails; 0 is unlimited.
  size_t max_stream_bytes = defaults::kMaxStreamBytes;
  // Do: larger response bodies fail with RESOURCE_EXHAUSTED.
  size_t max_response_bytes = defaults::kMaxResponseBytes;
  // One log line per call (--access_log).
  bool access_log = defaults::kAccessLog;
  // Calls in flight per origin and per caller, each with its own queue;
  // nullptr: no such limits. Must outlive the service's calls.
  InflightLimits* limits = nullptr;
  // Takes a token for each Retry-After retry (DoRequest.retry); nullptr:
  // unlimited. Must outlive the service's calls.
  RetryBudget* retry_budget = nullptr;
  // Rate limits: each origin entry's rate_limit, and caller_rate for every
  // caller identity ("100/s", --rate_limit_per_caller; empty: none). A call
  // over one waits its turn, holding no worker (in `limits`' care), for at
  // most its entry's max_wait or rate_max_wait, or is refused (RATE_LIMITED).
  // nullptr: no rate limits. Must outlive the service's calls.
  RateLimiter* rates = nullptr;  // held here, or shared through Redis
  std::string caller_rate;
  std::chrono::nanoseconds rate_max_wait = defaults::kRateLimitMaxWait;
};

class EgressService final : public egress::v1::EgressService::CallbackService {
 public:
  // REQUIRES: pool, metrics and clock outlive the service.
  EgressService(const ServiceOptions& options, WorkerPool<EgressWorker>& pool,
                Metrics& metrics, const Clock& clock);

  grpc::ServerUnaryReactor* Do(grpc::CallbackServerContext* context,
                               const egress::v1::DoRequest* request,
                               egress::v1::DoResponse* response) override;

  grpc::ServerWriteReactor<egress::v1::DoStreamResponse>* DoStream(
      grpc::CallbackServerContext* context,
      const egress::v1::DoStreamRequest* request) override;

 private:
  class Call;
  class StreamCall;

  // Admits the call and hands it to a worker, or answers it at once. `owned`:
  // see Admission::Admit.
  // Takes the call's turn under its origin's and its caller's rate limits:
  // the time it may go (now, or later; MonoTime{} when no limit applies), or
  // RATE_LIMITED.
  absl::StatusOr<MonoTime> TakeRateTurn(const Admitted& call,
                                        const std::string& identity);

  template <typename CallT>
  void Start(CallT* call, const egress::v1::DoRequest& request,
             egress::v1::DoRequest* owned,
             const grpc::CallbackServerContext& context, Admission::Rpc rpc);
  // RESOURCE_EXHAUSTED when the queue is full.
  absl::Status Submit(WorkerPool<EgressWorker>::Task task);
  // Whether an answer is retried (answer_retry.h), counted by outcome.
  // The call's plan for the worker: its Retry-After retries decided by
  // DecideAnswerRetry when it opted in.
  CallPlan PlanFor(const Admitted& call, ExchangeCanceller& canceller);
  // Tells outlier ejection how the call to its origin ended.
  void RecordVerdict(const Admitted& call, const absl::Status& status,
                     int http_status);
  RetryDecision DecideAnswerRetry(const UpstreamRequest& request,
                                  const UpstreamHead& answer, int answers,
                                  const Deadline& deadline);

  const ServiceOptions options_;
  WorkerPool<EgressWorker>& pool_;
  Metrics& metrics_;
  const Clock& clock_;
  const Admission admission_;
  CallLog log_;
  const StreamPump::Limits pump_limits_;  // each DoStream's
  // options_.caller_rate, parsed (Config::Validate checked it).
  const std::optional<RateLimit> caller_rate_;
  // Allocates Do's request and response, so that the service owns the request
  // and can move its body out (gRPC hands handlers a const request otherwise;
  // server-streaming methods have no allocator, so DoStream's body is copied).
  class DoAllocator final
      : public grpc::MessageAllocator<egress::v1::DoRequest,
                                      egress::v1::DoResponse> {
   public:
    grpc::MessageHolder<egress::v1::DoRequest, egress::v1::DoResponse>*
    AllocateMessages() override;
  };
  DoAllocator do_allocator_;
};

}  // namespace egress
