#include "service/egress_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "service/log.h"

namespace egress {
namespace {

std::chrono::nanoseconds MaintenanceInterval(const Config& config) {
  // Often enough that an idle session outlives keepalive_timeout by at most
  // half of it, rarely enough to cost nothing.
  return std::clamp<std::chrono::nanoseconds>(config.keepalive_timeout / 2,
                                              std::chrono::milliseconds(100),
                                              std::chrono::seconds(5));
}

}  // namespace

EgressServer::EgressServer(const Config& config, const Clock& clock)
    : config_(config), clock_(clock) {}

absl::StatusOr<std::unique_ptr<EgressServer>> EgressServer::Start(
    const Config& config, const Clock& clock, Resolver* resolver) {
  absl::Status valid = config.Validate();
  if (!valid.ok()) return valid;
  std::unique_ptr<EgressServer> s(new EgressServer(config, clock));
  s->metrics_ = std::make_unique<Metrics>();

  if (!config.metrics_listen.empty()) {
    auto metrics_server =
        MetricsServer::Start(config.metrics_listen, s->metrics_->registry());
    if (!metrics_server.ok()) {
      return absl::Status(metrics_server.status().code(),
                          absl::StrCat("--metrics_listen: ",
                                       metrics_server.status().message()));
    }
    s->metrics_server_ = std::move(*metrics_server);
    s->metrics_port_ = s->metrics_server_->port();
  }

  absl::StatusOr<std::unique_ptr<TrustStore>> trust =
      TrustStore::Load(config.ca_file);
  if (!trust.ok()) return trust.status();
  s->trust_ = std::move(*trust);
  if (config.insecure_skip_verify) {
    // A degraded mode logs and shows in a metric.
    LogWarning(
        "--insecure_skip_verify is on: https upstreams' certificates and host "
        "names are NOT verified; any machine on the path can impersonate them");
    s->metrics_->tls_insecure_skip_verify().Set(1);
  }
  if (resolver == nullptr) {
    s->own_resolver_ = std::make_unique<SystemResolver>();
    resolver = s->own_resolver_.get();
  }
  DnsCacheOptions dns_options;
  dns_options.ttl = config.dns_ttl;
  dns_options.negative_ttl = config.dns_negative_ttl;
  dns_options.max_entries = config.dns_cache_size;
  s->dns_ = std::make_unique<DnsCache>(*resolver, clock, dns_options);

  SessionCacheOptions cache_options;
  cache_options.max_sessions = config.max_sessions_per_worker;
  cache_options.keepalive_timeout = config.keepalive_timeout;
  cache_options.session.connect_timeout = config.connect_timeout;
  cache_options.session.max_errors = config.max_session_errors;
  cache_options.session.max_requests = config.max_requests_per_session;
  cache_options.session.max_response_bytes = config.max_response_bytes;
  cache_options.session.verify_tls = !config.insecure_skip_verify;
  cache_options.session.trust_store = s->trust_->get();
  cache_options.session.dns = s->dns_.get();

  WorkerPoolOptions pool_options;
  pool_options.workers = config.workers;
  pool_options.max_queue = config.max_queue;
  pool_options.maintenance_interval = MaintenanceInterval(config);
  Metrics* metrics = s->metrics_.get();
  pool_options.on_queue_depth = [metrics](size_t depth) {
    metrics->queue_depth().Set(static_cast<double>(depth));
  };
  const Clock* clock_ptr = &clock;
  s->pool_ = std::make_unique<WorkerPool<EgressWorker>>(
      pool_options, [cache_options, clock_ptr, metrics](size_t index) {
        return std::make_unique<EgressWorker>(index, cache_options, *clock_ptr,
                                              *metrics);
      });

  ServiceOptions service_options;
  service_options.limits.max_request_bytes = config.max_request_bytes;
  service_options.default_timeout = config.default_timeout;
  service_options.max_timeout = config.max_timeout;
  service_options.stream_idle_timeout = config.stream_idle_timeout;
  service_options.max_stream_bytes = config.max_stream_bytes;
  s->service_ = std::make_unique<EgressService>(service_options, *s->pool_,
                                                *s->metrics_, clock);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, grpc::InsecureServerCredentials(),
                           &s->grpc_port_);
  // Room for the largest body plus headers and framing.
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<size_t>(config.max_request_bytes + (1 << 20), INT32_MAX)));
  builder.SetMaxSendMessageSize(-1);
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->grpc_port_ == 0) {
    s->shut_down_ = true;
    s->pool_->Shutdown();
    return absl::UnavailableError(absl::StrCat("--listen=", config.listen,
                                               ": cannot listen (address in "
                                               "use or invalid?)"));
  }
  s->server_->GetHealthCheckService()->SetServingStatus(true);
  LogInfo(absl::StrCat("egressd serving gRPC on port ", s->grpc_port_, " (",
                       config.listen, "), metrics on port ", s->metrics_port_,
                       ", ", config.workers, " workers"));
  return s;
}

EgressServer::~EgressServer() { Shutdown(config_.drain_timeout); }

void EgressServer::Shutdown(std::chrono::nanoseconds drain) {
  if (shut_down_) return;
  shut_down_ = true;
  LogInfo("egressd shutting down: NOT_SERVING, draining calls in flight");
  server_->GetHealthCheckService()->SetServingStatus(false);
  // Refuses new calls at once; waits up to `drain` for calls in flight, then
  // cancels the rest. The workers still answer every call they hold.
  server_->Shutdown(
      std::chrono::system_clock::now() +
      std::chrono::duration_cast<std::chrono::system_clock::duration>(drain));
  pool_->Shutdown();  // runs what is queued, closes every session
  server_->Wait();
  LogInfo("egressd stopped");
}

}  // namespace egress
