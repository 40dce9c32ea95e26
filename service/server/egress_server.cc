#include "service/server/egress_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "service/base/log.h"
#include "service/policy/policy_files.h"
#include "service/server/listener_tls.h"
#include "service/server/policy_check.h"

namespace egress {
namespace {

std::chrono::nanoseconds MaintenanceInterval(const Config& config) {
  // How long an idle worker keeps its last session to itself before it parks
  // it in the shared tier (defaults.h says why these bounds).
  return std::clamp<std::chrono::nanoseconds>(
      config.pool.keepalive_timeout / 4, defaults::kMaintenanceIntervalMin,
      defaults::kMaintenanceIntervalMax);
}

// How often the janitor closes idle sessions past --keepalive_timeout.
std::chrono::nanoseconds JanitorInterval(const Config& config) {
  return std::clamp<std::chrono::nanoseconds>(config.pool.keepalive_timeout / 4,
                                              defaults::kJanitorIntervalMin,
                                              defaults::kJanitorIntervalMax);
}

// A name for gRPC's own listener that no other process guesses by accident.
std::string BackendName() {
  unsigned char random[8];
  if (RAND_bytes(random, sizeof(random)) != 1) {
    std::fill(std::begin(random), std::end(random), 0);
  }
  std::string hex;
  for (unsigned char b : random)
    absl::StrAppend(&hex, absl::Hex(b, absl::kZeroPad2));
  return absl::StrCat("egressd-", getpid(), "-", hex);
}

}  // namespace

absl::Status EgressServer::ReloadCallers() { return auth_->Reload(); }

namespace {

// Outlier ejection's events, as metrics and log lines.
class EjectionMetrics final : public OutlierEjection::Listener {
 public:
  explicit EjectionMetrics(Metrics& metrics) : metrics_(metrics) {}
  void OnEjected(const std::string& origin, std::chrono::nanoseconds length,
                 bool again) override {
    metrics_.RecordEjection();
    if (!again) metrics_.origins_ejected().Increment();
    LogWarning(absl::StrFormat(
        "origin %s ejected for %.1fs (%s): its calls fail at once with "
        "ORIGIN_EJECTED, then one probe call is let through",
        origin, Seconds(length),
        again ? "the probe failed" : "it failed in a row"));
  }
  void OnRestored(const std::string& origin) override {
    metrics_.origins_ejected().Decrement();
    LogInfo(absl::StrCat("origin ", origin,
                         " answered the probe call: no longer ejected"));
  }

 private:
  Metrics& metrics_;
};

}  // namespace

absl::Status EgressServer::Reload(const Config& next) {
  std::lock_guard<std::mutex> lock(reload_mu_);
  // Everything is built first; nothing changes unless all of it is valid.
  absl::Status status = [&]() -> absl::Status {
    if (absl::Status valid = next.Validate(); !valid.ok()) return valid;
    absl::StatusOr<std::unique_ptr<DestinationPolicy>> policy =
        PolicyFromConfig(next);
    if (!policy.ok()) return policy.status();
    absl::StatusOr<std::shared_ptr<const OriginTable>> table =
        next.LoadOrigins(session_defaults_);
    if (!table.ok()) return table.status();
    absl::StatusOr<CallerAuth::Prepared> callers =
        auth_->Prepare(next.identity_hosts);
    if (!callers.ok()) return callers.status();
    policy_->Replace(**policy);
    origins_->Replace(*std::move(table));
    auth_->Commit(*std::move(callers));
    return absl::OkStatus();
  }();
  metrics_->RecordConfigReload(status.ok());
  if (!status.ok()) return status;
  const std::vector<std::string> restart = RestartOnlyChanges(config_, next);
  LogInfo(absl::StrCat("reloaded: ", next.origins.size(),
                       " origins entries, the policy lists, the caller files",
                       restart.empty()
                           ? ""
                           : absl::StrCat("; changed but applied only by a "
                                          "restart: ",
                                          absl::StrJoin(restart, ", "))));
  return absl::OkStatus();
}

absl::Status EgressServer::ReloadFrom(
    const std::function<absl::StatusOr<Config>()>& load,
    absl::string_view why) {
  absl::StatusOr<Config> next = load();
  absl::Status status = next.ok() ? Reload(*next) : next.status();
  if (!next.ok()) metrics_->RecordConfigReload(false);
  if (!status.ok()) {
    LogError(absl::StrCat(why, ": reload refused, the running settings stay: ",
                          status.message()));
  }
  return status;
}

void EgressServer::WatchConfig(std::function<absl::StatusOr<Config>()> load,
                               std::chrono::nanoseconds interval) {
  std::vector<std::string> files;
  for (const std::string* file :
       {&config_.config_file, &config_.auth_tokens_file,
        &config_.identity_hosts_file}) {
    if (!file->empty()) files.push_back(*file);
  }
  if (files.empty()) return;
  watcher_ = std::make_unique<ConfigWatcher>(
      files, interval, [this, load = std::move(load)] {
        ReloadFrom(load, "a watched file changed").IgnoreError();
      });
}

EgressServer::EgressServer(const Config& config, const Clock& clock)
    : config_(config), clock_(clock) {}

absl::StatusOr<std::unique_ptr<EgressServer>> EgressServer::Start(
    const Config& config, const Clock& clock, Resolver* resolver) {
  absl::Status valid = config.Validate();
  if (!valid.ok()) return valid;
  // Every pooled connection is a file descriptor: take the hard limit, as Go's
  // runtime does, rather than fail with EMFILE at the usual soft 1024.
  rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 &&
      files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  SetLogFormat(config.log_format == "json" ? LogFormat::kJson
                                           : LogFormat::kText);
  std::unique_ptr<EgressServer> s(new EgressServer(config, clock));
  s->metrics_ =
      std::make_unique<Metrics>(ParseMetricsOrigins(config.metrics_origins)
                                    .value_or(std::vector<std::string>{}));

  if (!config.metrics_listen.empty()) {
    Metrics* m = s->metrics_.get();
    auto metrics_server = MetricsServer::Start(config.metrics_listen,
                                               [m] { return m->Collect(); });
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
  s->dns_ = std::make_unique<DnsCache>(*resolver, clock, config.dns);

  absl::StatusOr<std::unique_ptr<DestinationPolicy>> policy =
      PolicyFromConfig(config);
  if (!policy.ok()) return policy.status();
  s->policy_ = *std::move(policy);

  absl::StatusOr<std::unique_ptr<CallerAuth>> auth =
      CallerAuth::Create(config.auth_tokens_file, config.identity_hosts_file,
                         config.identity_hosts);
  if (!auth.ok()) return auth.status();
  s->auth_ = *std::move(auth);

  s->tls_sessions_ = std::make_unique<TlsSessionStore>();
  // Each unit takes its options from Config whole; only what exists at run
  // time (the DNS cache, the policy, the stores) and derived values are added.
  SessionCacheOptions cache_options = config.sessions;
  cache_options.keepalive_timeout = config.pool.keepalive_timeout;
  cache_options.session.tls_min_version =
      config.upstream_tls_min_version == "1.3" ? TLS1_3_VERSION
                                               : TLS1_2_VERSION;
  cache_options.session.verify_tls = !config.insecure_skip_verify;
  cache_options.session.trust_store = s->trust_->get();
  cache_options.session.dns = s->dns_.get();
  cache_options.session.policy = s->policy_.get();
  cache_options.session.tls_sessions = s->tls_sessions_.get();

  // Each origin's entry: the service-wide session options it changes, its
  // injected headers, its ejection rule.
  s->session_defaults_ = cache_options.session;
  absl::StatusOr<std::shared_ptr<const OriginTable>> origins =
      config.LoadOrigins(cache_options.session);
  if (!origins.ok()) return origins.status();
  s->origins_ = std::make_unique<OriginRoutes>(*std::move(origins));
  s->ejection_listener_ = std::make_unique<EjectionMetrics>(*s->metrics_);
  s->ejection_ =
      std::make_unique<OutlierEjection>(clock, s->ejection_listener_.get());

  SessionPoolOptions shared_options = config.pool;
  shared_options.janitor_interval = JanitorInterval(config);
  shared_options.dns = s->dns_.get();
  s->sessions_ =
      std::make_unique<SessionPool>(shared_options, clock, *s->metrics_);

  WorkerPoolOptions pool_options = config.worker_pool;
  pool_options.min_workers = config.MinWorkers();
  pool_options.max_workers = config.MaxWorkers();
  pool_options.maintenance_interval = MaintenanceInterval(config);
  Metrics* metrics = s->metrics_.get();
  pool_options.on_queue_depth = [metrics](size_t depth) {
    metrics->queue_depth().Set(static_cast<double>(depth));
  };
  pool_options.on_workers = [metrics](size_t workers, size_t busy) {
    metrics->workers().Set(static_cast<double>(workers));
    metrics->workers_busy().Set(static_cast<double>(busy));
  };
  const Clock* clock_ptr = &clock;
  SessionPool* shared = s->sessions_.get();
  metrics->workers_max().Set(static_cast<double>(config.MaxWorkers()));
  s->pool_ = std::make_unique<WorkerPool<EgressWorker>>(
      pool_options, [cache_options, shared, clock_ptr, metrics](size_t index) {
        return std::make_unique<EgressWorker>(index, cache_options, *shared,
                                              *clock_ptr, *metrics);
      });

  s->budget_ = std::make_unique<MemoryBudget>(config.max_buffered_bytes);
  const size_t memory_limit =
      config.memory_limit > 0 ? config.memory_limit : CgroupMemoryLimit();
  if (std::optional<std::string> warning =
          MemoryWarning(config.max_buffered_bytes, config.MaxWorkers(),
                        config.pool.max_idle_connections, memory_limit)) {
    LogWarning(*warning);
  }

  InflightLimitsOptions limits_options = config.inflight;
  limits_options.max_waiting = config.worker_pool.max_queue;
  limits_options.on_waiting = [metrics](size_t origins, size_t callers) {
    metrics->limit_waiting(LimitKind::kOrigin)
        .Set(static_cast<double>(origins));
    metrics->limit_waiting(LimitKind::kCaller)
        .Set(static_cast<double>(callers));
  };
  s->limits_ = std::make_unique<InflightLimits>(limits_options, clock);

  ServiceOptions service_options = config.service;
  service_options.limits = s->limits_.get();
  if (config.redis.address.empty()) {
    s->rates_ = std::make_unique<RateLimits>(clock);
  } else {
    SharedRateObserver observer;
    observer.on_fallback = [metrics] { metrics->RecordRateFallback(); };
    observer.on_redis_state = [metrics](bool up) {
      metrics->redis_up().Set(up ? 1 : 0);
    };
    observer.on_round_trip = [metrics](bool ahead) {
      metrics->RecordRedisRoundTrip(ahead);
    };
    observer.on_replicas = [metrics](uint32_t replicas) {
      metrics->rate_replicas().Set(replicas);
    };
    absl::StatusOr<std::unique_ptr<SharedRateLimits>> redis_limits =
        SharedRateLimits::Create(config.redis, clock, std::move(observer));
    if (!redis_limits.ok()) return redis_limits.status();
    s->rates_ = *std::move(redis_limits);
  }
  service_options.rates = s->rates_.get();
  s->retry_budget_ = std::make_unique<RetryBudget>(
      config.retry_budget_ratio, static_cast<int>(config.retry_budget_burst));
  service_options.retry_budget = s->retry_budget_.get();
  service_options.admission.budget = s->budget_.get();
  service_options.admission.max_inflight_per_caller =
      config.inflight.max_per_caller;
  service_options.admission.auth = s->auth_.get();
  service_options.admission.policy = s->policy_.get();
  service_options.admission.origins = s->origins_.get();
  service_options.admission.ejection = s->ejection_.get();
  s->service_ = std::make_unique<EgressService>(service_options, *s->pool_,
                                                *s->metrics_, clock);

  // Callers connect to the front, which bounds what reaches gRPC's HTTP/2
  // parser (docs/security.md); gRPC listens on a Unix socket of its own.
  absl::StatusOr<std::shared_ptr<SSL_CTX>> tls =
      ListenerTls(config.tls_cert, config.tls_key, config.client_ca);
  if (!tls.ok()) return tls.status();
  GrpcFrontOptions front = config.front;
  front.backend = BackendName();
  s->grpc_backend_ = absl::StrCat("unix-abstract:", front.backend);
  front.guard.max_header_block_bytes = 4 * config.max_header_list_bytes;
  front.tls = *tls;
  absl::StatusOr<std::unique_ptr<GrpcFront>> started =
      GrpcFront::Start(front, s->metrics_.get());
  if (!started.ok()) {
    s->shut_down_ = true;
    s->pool_->Shutdown();
    return started.status();
  }
  s->front_ = *std::move(started);
  if (*tls != nullptr) {
    GrpcFront* f = s->front_.get();
    s->auth_->SetPeerCertificates(
        [f](const std::string& peer) { return f->PeerCertificate(peer); },
        /*required=*/!config.client_ca.empty());
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int backend_port = 0;
  builder.AddListeningPort(s->grpc_backend_, grpc::InsecureServerCredentials(),
                           &backend_port);
  // Room for the largest body plus headers and framing.
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<size_t>(
      config.service.admission.limits.max_request_bytes + (1 << 20),
      INT32_MAX)));
  builder.SetMaxSendMessageSize(-1);
  // A caller's connection lives at most --max_connection_age (gRPC adds +-10%
  // jitter), so that callers spread over new replicas after a scale-up.
  const auto millis = [](std::chrono::nanoseconds d) {
    return static_cast<int>(std::min<int64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(d).count(),
        INT_MAX));
  };
  if (config.max_connection_age > std::chrono::nanoseconds::zero()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               millis(config.max_connection_age));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               millis(config.max_connection_age_grace));
  }
  if (config.max_connection_idle > std::chrono::nanoseconds::zero()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               millis(config.max_connection_idle));
  }
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONCURRENT_STREAMS,
      static_cast<int>(config.front.guard.max_concurrent_streams));
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE,
                             static_cast<int>(config.max_header_list_bytes));
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || backend_port == 0) {
    s->shut_down_ = true;
    s->front_->Close();
    s->pool_->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("--listen=", config.front.listen,
                     ": gRPC could not listen on its Unix socket"));
  }
  s->grpc_port_ = s->front_->port();
  s->server_->GetHealthCheckService()->SetServingStatus(true);
  if (config.client_ca.empty() && config.auth_tokens_file.empty() &&
      !IsLoopbackListen(config.front.listen)) {
    // Only with --allow_unauthenticated (Config::Validate).
    LogWarning(absl::StrCat(
        "--allow_unauthenticated: listening on ", config.front.listen,
        " without caller authentication: anyone who can reach this port can "
        "make requests through egressd (see --client_ca, "
        "--auth_tokens_file)"));
  }
  LogInfo(absl::StrCat("egressd serving gRPC on port ", s->grpc_port_, " (",
                       config.front.listen, "), metrics on port ",
                       s->metrics_port_, ", workers ", config.MinWorkers(), "-",
                       config.MaxWorkers()));
  return s;
}

EgressServer::~EgressServer() { Shutdown(config_.drain_timeout); }

void EgressServer::Shutdown(std::chrono::nanoseconds drain) {
  if (shut_down_) return;
  shut_down_ = true;
  watcher_.reset();
  if (server_ == nullptr) {
    // Start failed before the gRPC server existed: undo only what it built.
    if (pool_ != nullptr) pool_->Shutdown();
    return;
  }
  LogInfo("egressd shutting down: NOT_SERVING, draining calls in flight");
  server_->GetHealthCheckService()->SetServingStatus(false);
  front_->StopAccepting();
  const MonoTime drain_end = RealClock::Get().Now() + drain;
  // gRPC's Shutdown waits for every call to be answered, even after it has
  // cancelled them at the deadline; a worker still on a slow upstream would
  // hold it. At the deadline, abandon the exchanges still running.
  std::mutex mu;
  std::condition_variable cv;
  bool drained = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, drain_end - RealClock::Get().Now(),
                     [&] { return drained; })) {
      LogWarning(
          "drain time is over: abandoning the upstream exchanges in flight");
      pool_->ForEachLocal([](EgressWorker& worker) { worker.AbortCurrent(); });
    }
  });
  // Refuses new calls at once; waits up to `drain` for calls in flight, then
  // cancels the rest. The workers still answer every call they hold.
  server_->Shutdown(
      RealClock::Get().WallNow() +
      std::chrono::duration_cast<std::chrono::system_clock::duration>(drain));
  {
    std::lock_guard<std::mutex> lock(mu);
    drained = true;
  }
  cv.notify_all();
  watchdog.join();
  pool_->Shutdown();  // runs what is queued, closes the workers' sessions
  sessions_->DropAll(DropReason::kShutdown);
  server_->Wait();
  front_->Close();
  LogInfo("egressd stopped");
}

}  // namespace egress
