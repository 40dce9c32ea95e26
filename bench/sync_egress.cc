// sync_egress: a prototype for the performance issue, not the service. The
// same Do as egressd's (admission, the origin's in-flight slot, the session
// pool's two tiers, the exchange, the response proto, the metrics and the
// access log line), served by gRPC's synchronous API: the thread gRPC hands
// the call to performs the exchange and writes the answer itself, so a call
// crosses no thread. A call takes an idle EgressWorker (its SessionCache)
// from a free list for its duration, most recently used first, and gives it
// back: gRPC's synchronous server starts and ends threads as load changes, so
// a worker per thread (thread_local) would lose its session with its thread
// (measured: one new connection every three calls). gRPC keeps up to
// --threads pollers, so that threads are not ended under load. Idle sessions
// meet in the shared SessionPool. A call that must wait for its origin's slot
// blocks its thread until the slot comes or its deadline passes.
//
// Not built into egressd: no DoStream, no drain, no memory budget, no elastic
// worker bounds or their metrics. bench/compare measures it as the case
// sync-http against egress-http.
//
//   sync_egress --listen=127.0.0.1:PORT --metrics_listen=127.0.0.1:PORT
//               [--threads=64] [--ca_file=...] [--access_log=true]
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <signal.h>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "proto/egress/v1/egress.grpc.pb.h"
#include "service/admission/admission.h"
#include "service/admission/inflight_limits.h"
#include "service/api/call_log.h"
#include "service/api/response_proto.h"
#include "service/api/status_mapping.h"
#include "service/base/clock.h"
#include "service/base/log.h"
#include "service/pool/egress_worker.h"
#include "service/pool/session_pool.h"
#include "service/pool/whole_response.h"
#include "service/server/config.h"
#include "service/server/policy_check.h"
#include "service/telemetry/metrics.h"
#include "service/telemetry/metrics_server.h"
#include "service/transport/dns_cache.h"
#include "service/transport/tls_session_store.h"
#include "service/transport/tls_trust.h"

ABSL_FLAG(std::string, sync_listen, "127.0.0.1:50061", "gRPC address");
ABSL_FLAG(std::string, sync_metrics_listen, "", "Prometheus address");
ABSL_FLAG(int, threads, 64, "gRPC's synchronous threads, at most");

namespace egress {
namespace {

class SyncEgress final : public egress::v1::EgressService::Service {
 public:
  SyncEgress(const ServiceOptions& options, SessionPool& shared,
             const SessionCacheOptions& cache, Metrics& metrics)
      : options_(options),
        shared_(shared),
        cache_(cache),
        metrics_(metrics),
        admission_(options.admission, RealClock::Get()),
        log_(metrics, RealClock::Get(), options.access_log) {}

  grpc::Status Do(grpc::ServerContext* context,
                  const egress::v1::DoRequest* request,
                  egress::v1::DoResponse* response) override {
    CallContext record;
    log_.Begin(std::nullopt, RealClock::Get().Now(), record);
    absl::Status status = Serve(*context, *request, record, *response);
    log_.Complete(record, status);
    return ToGrpcStatus(status);
  }

 private:
  absl::Status Serve(grpc::ServerContext& context,
                     const egress::v1::DoRequest& request, CallContext& record,
                     egress::v1::DoResponse& response) {
    absl::StatusOr<Admitted> call = admission_.Admit(
        request, nullptr, context, Admission::Rpc::kDo, record);
    if (!call.ok()) return call.status();
    // The origin's slot; a call that must wait holds this thread.
    std::promise<absl::StatusOr<InflightSlot>> granted;
    std::future<absl::StatusOr<InflightSlot>> slot = granted.get_future();
    options_.limits->Acquire(
        call->request->origin.Key(), record.identity, call->caller_limit,
        call->deadline,
        [&granted](absl::StatusOr<InflightSlot> s) {
          granted.set_value(std::move(s));
        },
        nullptr,
        call->route != nullptr ? call->route->max_inflight : std::nullopt);
    absl::StatusOr<InflightSlot> held = slot.get();
    if (!held.ok()) return held.status();
    std::unique_ptr<EgressWorker> worker = TakeWorker();
    absl::Status status = Exchange(*worker, *call, record, response);
    GiveBack(std::move(worker));
    return status;
  }

  // The most recently used idle worker (its session the warmest), or a new
  // one.
  std::unique_ptr<EgressWorker> TakeWorker() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        std::unique_ptr<EgressWorker> worker = std::move(idle_.back());
        idle_.pop_back();
        return worker;
      }
    }
    return std::make_unique<EgressWorker>(next_.fetch_add(1), cache_, shared_,
                                          RealClock::Get(), metrics_);
  }
  void GiveBack(std::unique_ptr<EgressWorker> worker) {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(std::move(worker));
  }

  absl::Status Exchange(EgressWorker& worker, const Admitted& admitted,
                        CallContext& record, egress::v1::DoResponse& response) {
    const Admitted* call = &admitted;
    ExchangeCanceller canceller;
    CallPlan plan{*call->request, call->deadline, canceller};
    if (call->route != nullptr && call->route->own_sessions) {
      plan.session_options = &call->route->session;
    }
    WholeResponseSink sink(options_.max_response_bytes,
                           call->request->origin.Key(), nullptr);
    absl::StatusOr<ExchangeSummary> done = worker.Perform(plan, sink);
    if (!done.ok()) return done.status();
    UpstreamResponse result = sink.Finish(*done);
    record.attempts = result.attempts;
    record.reused = result.connection_reused;
    record.http_status = result.status;
    ToResponseProto(std::move(result), CallTiming{}, response);
    return absl::OkStatus();
  }

  const ServiceOptions options_;
  SessionPool& shared_;
  const SessionCacheOptions cache_;
  Metrics& metrics_;
  Admission admission_;
  CallLog log_;
  std::atomic<size_t> next_{0};
  std::mutex mu_;
  std::vector<std::unique_ptr<EgressWorker>> idle_;  // guarded by mu_
};

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  absl::StatusOr<Config> loaded = ConfigFromFlags(argc, argv);
  if (!loaded.ok()) {
    LogError(std::string(loaded.status().message()));
    return 2;
  }
  const Config& config = *loaded;
  Metrics metrics(std::vector<std::string>{});
  std::unique_ptr<MetricsServer> metrics_server;
  if (!absl::GetFlag(FLAGS_sync_metrics_listen).empty()) {
    auto started =
        MetricsServer::Start(absl::GetFlag(FLAGS_sync_metrics_listen),
                             [&metrics] { return metrics.Collect(); });
    if (!started.ok()) return 2;
    metrics_server = *std::move(started);
  }
  auto trust = TrustStore::Load(config.ca_file);
  auto policy = PolicyFromConfig(config);
  if (!trust.ok() || !policy.ok()) return 2;
  SystemResolver resolver;
  DnsCache dns(resolver, RealClock::Get(), config.dns);
  TlsSessionStore tls_sessions;
  SessionCacheOptions cache = config.sessions;
  cache.keepalive_timeout = config.pool.keepalive_timeout;
  cache.session.trust_store = (*trust)->get();
  cache.session.dns = &dns;
  cache.session.policy = policy->get();
  cache.session.tls_sessions = &tls_sessions;
  SessionPoolOptions shared_options = config.pool;
  shared_options.dns = &dns;
  SessionPool shared(shared_options, RealClock::Get(), metrics);
  InflightLimitsOptions limits_options = config.inflight;
  InflightLimits limits(limits_options, RealClock::Get());
  ServiceOptions service = config.service;
  service.limits = &limits;
  service.admission.policy = policy->get();
  service.admission.max_inflight_per_caller = config.inflight.max_per_caller;
  SyncEgress egress(service, shared, cache, metrics);

  grpc::ServerBuilder builder;
  grpc::ResourceQuota quota("sync_egress");
  quota.SetMaxThreads(absl::GetFlag(FLAGS_threads));
  builder.SetResourceQuota(quota);
  builder.SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
      absl::GetFlag(FLAGS_threads));
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_sync_listen),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&egress);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return 2;
  LogInfo(absl::StrCat("sync_egress serving gRPC on port ", port));
  // Log lines in batches, as egressd writes them.
  LogBatching log_batching(defaults::kLogFlushInterval);
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace egress

int main(int argc, char** argv) { return egress::Main(argc, argv); }
