// EgressService: the gRPC adapter for egress.v1.Egress, and nothing else.
//
// It runs on gRPC's callback threads and never blocks them: it validates the
// request, computes the upstream deadline, and hands the call to the WorkerPool
// (or refuses it at once when the queue is full). The worker that takes the
// call performs the exchange with its own sessions and finishes the reactor.
//
// Thread safety: thread-safe; one instance serves every call.
#pragma once

#include <chrono>

#include "absl/status/status.h"
#include "proto/egress/v1/egress.grpc.pb.h"
#include "service/clock.h"
#include "service/egress_worker.h"
#include "service/metrics.h"
#include "service/request_validation.h"
#include "service/worker_pool.h"

namespace egress {

struct ServiceOptions {
  ValidationLimits limits;
  std::chrono::nanoseconds default_timeout = std::chrono::seconds(30);
  std::chrono::nanoseconds max_timeout = std::chrono::seconds(300);
};

class EgressService final : public egress::v1::Egress::CallbackService {
 public:
  // REQUIRES: pool, metrics and clock outlive the service.
  EgressService(const ServiceOptions& options, WorkerPool<EgressWorker>& pool,
                Metrics& metrics, const Clock& clock);

  grpc::ServerUnaryReactor* Do(grpc::CallbackServerContext* context,
                               const egress::v1::EgressRequest* request,
                               egress::v1::EgressResponse* response) override;

 private:
  class Call;

  const ServiceOptions options_;
  WorkerPool<EgressWorker>& pool_;
  Metrics& metrics_;
  const Clock& clock_;
};

}  // namespace egress
