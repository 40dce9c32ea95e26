// EgressServer: the whole running service, assembled from a Config: metrics and
// their HTTP endpoint, the worker pool, the Egress gRPC service with health
// checking and reflection, and an orderly shutdown. main.cc and the integration
// tests both start the service through this class.
//
// Usage:
//   absl::StatusOr<std::unique_ptr<EgressServer>> server =
//       EgressServer::Start(config);
//   ... (*server)->grpc_port() ...
//   (*server)->Shutdown(config.drain_timeout);
//
// Thread safety: Start and Shutdown from one controlling thread; the accessors
// from any thread.
#pragma once

#include <grpcpp/server.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>

#include "absl/status/statusor.h"
#include "service/admission/caller_auth.h"
#include "service/admission/inflight_limits.h"
#include "service/admission/origin_table.h"
#include "service/admission/outlier_ejection.h"
#include "service/admission/rate_limits.h"
#include "service/admission/shared_rate_limits.h"
#include "service/api/egress_service.h"
#include "service/base/clock.h"
#include "service/policy/destination_policy.h"
#include "service/pool/egress_worker.h"
#include "service/pool/memory_budget.h"
#include "service/pool/session_pool.h"
#include "service/pool/worker_pool.h"
#include "service/server/config.h"
#include "service/server/config_reload.h"
#include "service/server/grpc_front.h"
#include "service/telemetry/metrics.h"
#include "service/telemetry/metrics_server.h"
#include "service/transport/dns_cache.h"
#include "service/transport/tls_session_store.h"
#include "service/transport/tls_trust.h"

namespace egress {

class EgressServer {
 public:
  // Validates `config`, binds both listeners and starts the workers. A port of
  // 0 in an address binds an ephemeral port (see grpc_port(), metrics_port()).
  // REQUIRES: `clock` outlives the server.
  // `resolver` answers host names (nullptr: the system's getaddrinfo); tests
  // inject one so that no name but localhost reaches a real name server.
  static absl::StatusOr<std::unique_ptr<EgressServer>> Start(
      const Config& config, const Clock& clock = RealClock::Get(),
      Resolver* resolver = nullptr);

  // Shuts down with the config's drain_timeout if Shutdown was not called.
  ~EgressServer();

  // Health goes NOT_SERVING, new calls are refused, calls in flight get `drain`
  // to finish (then they are cancelled), the workers stop and close their
  // sessions. Idempotent.
  void Shutdown(std::chrono::nanoseconds drain);

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }  // 0 when disabled
  // gRPC's own listener behind the front ("unix-abstract:NAME"), which a
  // process in the same network namespace can reach; for tests of that.
  const std::string& grpc_backend() const { return grpc_backend_; }
  Metrics& metrics() { return *metrics_; }

  // Re-reads --auth_tokens_file and --identity_hosts_file. On error the old
  // entries stay in force.
  absl::Status ReloadCallers();
  // Applies what a reload can of `next` (settings.h's kLive settings: the
  // policy lists; the origins entries; the config file's identity_hosts)
  // and re-reads the token and identity files, all or nothing: an invalid
  // `next` changes nothing and the error names the problem. Calls in flight
  // finish with the settings they started with. Settings only a restart
  // applies are logged, not applied. Counted in
  // egress_config_reloads_total{result}.
  absl::Status Reload(const Config& next);
  // Reload with what `load` makes (main: the config file and the flags
  // again); a `load` error is a refused reload too. `why` ("SIGHUP") is
  // logged.
  absl::Status ReloadFrom(const std::function<absl::StatusOr<Config>()>& load,
                          absl::string_view why);
  // Calls ReloadFrom(load) whenever the --config file, --auth_tokens_file or
  // --identity_hosts_file changes (a Kubernetes ConfigMap or Secret update
  // included), looking every `interval`, until Shutdown.
  void WatchConfig(
      std::function<absl::StatusOr<Config>()> load,
      std::chrono::nanoseconds interval = defaults::kConfigPollInterval);
  // Origins ejected now (outlier ejection).
  size_t origins_ejected() const { return ejection_->ejected(); }

 private:
  explicit EgressServer(const Config& config, const Clock& clock);

  const Config config_;
  const Clock& clock_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Resolver> own_resolver_;
  std::unique_ptr<DnsCache> dns_;
  std::unique_ptr<TrustStore> trust_;
  std::unique_ptr<DestinationPolicy> policy_;
  std::unique_ptr<CallerAuth> auth_;
  // The service-wide session options that origin entries change.
  SessionOptions session_defaults_;
  std::unique_ptr<OriginRoutes> origins_;
  std::unique_ptr<OutlierEjection::Listener> ejection_listener_;
  std::unique_ptr<OutlierEjection> ejection_;
  std::mutex reload_mu_;  // one reload at a time
  std::unique_ptr<ConfigWatcher> watcher_;
  std::unique_ptr<MetricsServer> metrics_server_;
  // Before the pool and the service: destroyed after them.
  std::unique_ptr<MemoryBudget> budget_;
  std::unique_ptr<InflightLimits> limits_;
  // The origins' and callers' rates: held here, or shared through --redis.
  std::unique_ptr<RateLimiter> rates_;
  std::unique_ptr<RetryBudget> retry_budget_;
  // Before the pool: the workers' sessions go here, and the pool's sessions
  // save TLS sessions here, until the workers are gone.
  std::unique_ptr<TlsSessionStore> tls_sessions_;
  std::unique_ptr<SessionPool> sessions_;
  std::unique_ptr<WorkerPool<EgressWorker>> pool_;
  std::unique_ptr<EgressService> service_;
  std::unique_ptr<grpc::Server> server_;
  // Callers' connections: closed by Shutdown after the server stopped.
  std::unique_ptr<GrpcFront> front_;
  int grpc_port_ = 0;
  std::string grpc_backend_;
  int metrics_port_ = 0;
  bool shut_down_ = false;
};

}  // namespace egress
