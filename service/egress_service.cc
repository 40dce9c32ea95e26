#include "service/egress_service.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
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

// One call in flight: what is needed to answer it, from whichever thread.
class EgressService::Call {
 public:
  Call(EgressService& service, grpc::CallbackServerContext& context,
       egress::v1::EgressResponse& response, MonoTime start)
      : service_(service),
        context_(context),
        response_(response),
        reactor_(context.DefaultReactor()),
        start_(start) {
    service_.metrics_.requests_in_flight().Increment();
  }

  grpc::ServerUnaryReactor* reactor() { return reactor_; }
  grpc::CallbackServerContext& context() { return context_; }
  MonoTime start() const { return start_; }
  void set_method(std::string method) { method_ = std::move(method); }

  // Answers the call with `status` (the response as filled so far when OK),
  // records it, and deletes this Call.
  void Finish(const absl::Status& status, int http_status) {
    const nanoseconds total = service_.clock_.Now() - start_;
    if (status.ok())
      SetDuration(total, *response_.mutable_timing()->mutable_total());
    service_.metrics_.RecordCall(method_, http_status, status.code(),
                                 Seconds(total));
    service_.metrics_.requests_in_flight().Decrement();
    grpc::ServerUnaryReactor* reactor = reactor_;
    grpc::Status grpc_status = ToGrpcStatus(status);
    delete this;
    // On a worker, all that is left is to answer: become idle first, so that
    // the caller's next call finds this warm worker (no-op elsewhere).
    WorkerPool<EgressWorker>::ReleaseCurrentWorker();
    reactor->Finish(std::move(grpc_status));
  }

  // Runs on a worker: performs the exchange and answers.
  void Run(EgressWorker& worker, const UpstreamRequest& request,
           MonoTime deadline) {
    const MonoTime taken = service_.clock_.Now();
    const nanoseconds queued = taken - start_;
    if (taken >= deadline) {
      Finish(absl::DeadlineExceededError(absl::StrFormat(
                 "deadline expired after %.3fs waiting for a worker; the "
                 "upstream was not contacted",
                 Seconds(queued))),
             0);
      return;
    }
    if (context_.IsCancelled()) {
      Finish(absl::CancelledError("call cancelled before a worker took it"), 0);
      return;
    }
    absl::StatusOr<UpstreamResponse> result = worker.Perform(request, deadline);
    if (!result.ok()) {
      Finish(result.status(), 0);
      return;
    }
    service_.metrics_.RecordUpstreamSeconds(Seconds(result->upstream_time));
    response_.set_status(result->status);
    response_.mutable_headers()->Reserve(
        static_cast<int>(result->headers.size()));
    for (auto& [name, value] : result->headers) {
      egress::v1::Header* header = response_.add_headers();
      header->set_name(std::move(name));
      header->set_value(std::move(value));
    }
    response_.set_body(std::move(result->body));
    egress::v1::Timing& timing = *response_.mutable_timing();
    timing.set_connection_reused(result->connection_reused);
    timing.set_attempts(result->attempts);
    SetDuration(queued, *timing.mutable_queued());
    SetDuration(result->upstream_time, *timing.mutable_upstream());
    Finish(absl::OkStatus(), result->status);
  }

 private:
  EgressService& service_;
  grpc::CallbackServerContext& context_;
  egress::v1::EgressResponse& response_;
  grpc::ServerUnaryReactor* const reactor_;
  const MonoTime start_;
  std::string method_;
};

EgressService::EgressService(const ServiceOptions& options,
                             WorkerPool<EgressWorker>& pool, Metrics& metrics,
                             const Clock& clock)
    : options_(options), pool_(pool), metrics_(metrics), clock_(clock) {}

grpc::ServerUnaryReactor* EgressService::Do(
    grpc::CallbackServerContext* context,
    const egress::v1::EgressRequest* request,
    egress::v1::EgressResponse* response) {
  auto* call = new Call(*this, *context, *response, clock_.Now());
  grpc::ServerUnaryReactor* reactor = call->reactor();
  // Labels only: Metrics folds anything but the standard methods into "OTHER".
  call->set_method(request->method().empty() ? "GET" : request->method());

  absl::StatusOr<UpstreamRequest> upstream =
      ValidateRequest(*request, options_.limits);
  if (!upstream.ok()) {
    call->Finish(upstream.status(), 0);
    return reactor;
  }

  // Upstream timeout: the smallest of the caller's timeout, the call's
  // remaining deadline and --max_timeout; --default_timeout when the caller
  // gave neither.
  const nanoseconds remaining = RemainingGrpcTime(*context);
  nanoseconds timeout = upstream->timeout.count() > 0 ? upstream->timeout
                        : remaining != nanoseconds::max()
                            ? remaining
                            : options_.default_timeout;
  timeout = std::min({timeout, remaining, options_.max_timeout});
  if (timeout <= nanoseconds::zero()) {
    call->Finish(absl::DeadlineExceededError(
                     "deadline expired before the call reached the service"),
                 0);
    return reactor;
  }
  const MonoTime deadline = call->start() + timeout;

  auto shared_request = std::make_shared<UpstreamRequest>(std::move(*upstream));
  const bool accepted =
      pool_.TrySubmit([call, shared_request, deadline](EgressWorker& worker) {
        call->Run(worker, *shared_request, deadline);
      });
  if (!accepted) {
    call->Finish(absl::ResourceExhaustedError(absl::StrFormat(
                     "queue full: %d calls already wait for a worker "
                     "(--max_queue); retry with backoff",
                     pool_.QueueDepth())),
                 0);
  }
  return reactor;
}

}  // namespace egress
