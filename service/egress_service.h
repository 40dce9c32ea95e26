// EgressService: the gRPC adapter for egress.v1.Egress, and nothing else.
//
// It runs on gRPC's callback threads and never blocks them: it validates the
// request, computes the upstream deadline, and hands the call to the WorkerPool
// (or refuses it at once when the queue is full). The worker that takes the
// call performs the exchange with its own sessions and finishes the reactor.
//
// Thread safety: thread-safe; one instance serves every call.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "proto/egress/v1/egress.grpc.pb.h"
#include "service/caller_auth.h"
#include "service/clock.h"
#include "service/destination_policy.h"
#include "service/egress_worker.h"
#include "service/metrics.h"
#include "service/request_validation.h"
#include "service/worker_pool.h"

namespace egress {

struct ServiceOptions {
  ValidationLimits limits;
  std::chrono::nanoseconds default_timeout = std::chrono::seconds(30);
  std::chrono::nanoseconds max_timeout = std::chrono::seconds(300);
  // DoStream: the longest wait for the upstream's next bytes, and for the
  // caller to take the previous ones.
  std::chrono::nanoseconds stream_idle_timeout = std::chrono::minutes(5);
  // DoStream: bytes after which the stream fails; 0 is unlimited.
  size_t max_stream_bytes = 0;
  // One log line per call (--access_log).
  bool access_log = true;
  // Who may call; nullptr lets everyone in as "anonymous".
  const CallerAuth* auth = nullptr;
  // Which hosts may be reached (addresses are checked by the sessions);
  // nullptr allows every host.
  const DestinationPolicy* policy = nullptr;
};

// Moves an upstream response into the Do answer (everything but timing.total).
// Appends one header to `to`: in `value` when it is UTF-8, else in
// `raw_value` (see Header in egress.proto).
void AddHeader(std::string&& name, std::string&& value,
               google::protobuf::RepeatedPtrField<egress::v1::Header>& to);

void ToResponseProto(UpstreamResponse&& from, std::chrono::nanoseconds queued,
                     egress::v1::EgressResponse& to);

class EgressService final : public egress::v1::Egress::CallbackService {
 public:
  // REQUIRES: pool, metrics and clock outlive the service.
  EgressService(const ServiceOptions& options, WorkerPool<EgressWorker>& pool,
                Metrics& metrics, const Clock& clock);

  grpc::ServerUnaryReactor* Do(grpc::CallbackServerContext* context,
                               const egress::v1::EgressRequest* request,
                               egress::v1::EgressResponse* response) override;

  grpc::ServerWriteReactor<egress::v1::EgressResponseChunk>* DoStream(
      grpc::CallbackServerContext* context,
      const egress::v1::EgressRequest* request) override;

 private:
  class Call;
  class StreamCall;

  // What is known of one call, for its metrics and its access log line.
  struct CallRecord {
    MonoTime start;
    std::string request_id;  // x-request-id metadata, or generated
    std::string method = "GET";
    std::string identity = "anonymous";
    std::string url;
    std::string origin;  // once validated
    int http_status = 0;
    int attempts = 0;
    bool reused = false;
  };

  // A validated request and the deadline of its upstream exchange.
  struct Admission {
    std::shared_ptr<const UpstreamRequest> request;
    MonoTime deadline;
  };

  // Authenticates the caller (filling `record` as it goes), validates the
  // request, checks its host against the policy, and computes the deadline of
  // the upstream exchange.
  absl::StatusOr<Admission> Admit(const egress::v1::EgressRequest& request,
                                  const grpc::CallbackServerContext& context,
                                  std::chrono::nanoseconds default_timeout,
                                  CallRecord& record) const;
  // A call arrives: its request id, and the in-flight gauge.
  void Begin(const grpc::CallbackServerContext& context, MonoTime start,
             CallRecord& record);
  // A call ends: metrics, a log line for a refusal by the policy or by
  // authentication (naming the caller), the access log line. Returns the
  // call's total time.
  std::chrono::nanoseconds Complete(const CallRecord& record,
                                    const absl::Status& status) const;
  // RESOURCE_EXHAUSTED when the queue is full.
  absl::Status Submit(std::function<void(EgressWorker&)> task);
  // On the worker that took a call: may it still go ahead?
  absl::Status CheckTaken(const grpc::CallbackServerContext& context,
                          std::chrono::nanoseconds queued,
                          MonoTime deadline) const;

  const ServiceOptions options_;
  WorkerPool<EgressWorker>& pool_;
  Metrics& metrics_;
  const Clock& clock_;
  std::atomic<uint64_t> request_ids_{1};
  // Makes generated request ids differ between processes.
  const uint64_t id_salt_ = static_cast<uint64_t>(
      std::chrono::system_clock::now().time_since_epoch().count());
};

}  // namespace egress
