#include "service/telemetry/metrics.h"

#include <algorithm>
#include <string>

#include "service/telemetry/process_metrics.h"

namespace egress {
namespace {

using prometheus::Histogram;

const char* const kMethodNames[] = {"GET",     "HEAD",   "POST",
                                    "PUT",     "DELETE", "PATCH",
                                    "OPTIONS", "TRACE",  "OTHER"};
const char* const kCodeClassNames[] = {"none", "1xx", "2xx",
                                       "3xx",  "4xx", "5xx"};

int MethodIndex(const std::string& method) {
  for (int i = 0; i < 8; ++i) {
    if (method == kMethodNames[i]) return i;
  }
  return 8;
}

int CodeClassIndex(int http_status) {
  if (http_status < 100 || http_status > 599) return 0;
  return http_status / 100;
}

// From half a millisecond (a warm loopback call) to a minute (slow upstreams).
Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
          0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
}

}  // namespace

Metrics::Metrics(const std::vector<std::string>& origins)
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_family_(
          prometheus::BuildCounter()
              .Name("egress_requests_total")
              .Help("Calls answered, by HTTP method, upstream status "
                    "class and gRPC outcome.")
              .Register(*registry_)),
      request_duration_(prometheus::BuildHistogram()
                            .Name("egress_request_duration_seconds")
                            .Help("Time from a call's arrival to its answer, "
                                  "inside the service.")
                            .Register(*registry_)
                            .Add({}, LatencyBuckets())),
      upstream_duration_family_(
          prometheus::BuildHistogram()
              .Name("egress_upstream_duration_seconds")
              .Help("Time spent on the upstream exchange, by origin (those "
                    "listed in --metrics_origins, else \"other\") and RPC.")
              .Register(*registry_)),
      first_byte_family_(
          prometheus::BuildHistogram()
              .Name("egress_upstream_first_byte_seconds")
              .Help("Time from the start of the upstream exchange (DNS "
                    "included) to the response head, by origin and RPC.")
              .Register(*registry_)),
      cancel_callback_(
          prometheus::BuildHistogram()
              .Name("egress_cancel_callback_seconds")
              .Help("Time gRPC's thread spent in a cancel callback, aborting "
                    "the call's upstream exchange.")
              .Register(*registry_)
              .Add({}, Histogram::BucketBoundaries{0.00001, 0.0001, 0.001,
                                                   0.005, 0.01, 0.1, 1})),
      recreations_family_(prometheus::BuildCounter()
                              .Name("egress_session_recreations_total")
                              .Help("Upstream sessions dropped, by reason.")
                              .Register(*registry_)),
      sessions_active_(
          prometheus::BuildGauge()
              .Name("egress_sessions_active")
              .Help("Upstream sessions, busy or idle, in the whole pool.")
              .Register(*registry_)
              .Add({})),
      requests_in_flight_(prometheus::BuildGauge()
                              .Name("egress_requests_in_flight")
                              .Help("Calls received and not yet answered.")
                              .Register(*registry_)
                              .Add({})),
      queue_depth_(prometheus::BuildGauge()
                       .Name("egress_queue_depth")
                       .Help("Calls waiting for a worker.")
                       .Register(*registry_)
                       .Add({})),
      workers_(prometheus::BuildGauge()
                   .Name("egress_workers")
                   .Help("Worker threads running (--min_workers to "
                         "--max_workers).")
                   .Register(*registry_)
                   .Add({})),
      workers_busy_(prometheus::BuildGauge()
                        .Name("egress_workers_busy")
                        .Help("Worker threads serving a call; a stream holds "
                              "one for its whole life.")
                        .Register(*registry_)
                        .Add({})),
      workers_max_(prometheus::BuildGauge()
                       .Name("egress_workers_max")
                       .Help("--max_workers: egress_workers_busy / "
                             "egress_workers_max is how full this replica is.")
                       .Register(*registry_)
                       .Add({})),
      limit_waiting_family_(
          prometheus::BuildGauge()
              .Name("egress_limit_waiting")
              .Help("Calls waiting, holding no worker, for a slot of their "
                    "origin (--max_inflight_per_origin) or of their caller "
                    "(--max_inflight_per_caller), by limit.")
              .Register(*registry_)),
      waiting_origin_(limit_waiting_family_.Add({{"limit", "origin"}})),
      waiting_caller_(limit_waiting_family_.Add({{"limit", "caller"}})),
      connections_reused_family_(
          prometheus::BuildCounter()
              .Name("egress_connections_reused_total")
              .Help("Requests sent over an already open connection, by origin "
                    "(those listed in --metrics_origins, else \"other\").")
              .Register(*registry_)),
      connections_opened_family_(
          prometheus::BuildCounter()
              .Name("egress_connections_opened_total")
              .Help("TCP connections opened to upstreams, by origin.")
              .Register(*registry_)),
      pool_connections_family_(
          prometheus::BuildGauge()
              .Name("egress_pool_connections")
              .Help("Pooled upstream sessions (each holds at most one "
                    "connection), by state (idle: in a worker's cache or the "
                    "shared tier; busy: serving a call) and origin.")
              .Register(*registry_)),
      leases_family_(prometheus::BuildCounter()
                         .Name("egress_pool_leases_total")
                         .Help("Sessions lent to calls, by where they were "
                               "found: local (the worker's own), shared (the "
                               "shared tier) or new.")
                         .Register(*registry_)),
      stale_retries_(prometheus::BuildCounter()
                         .Name("egress_stale_retries_total")
                         .Help("Requests resent on a fresh connection after a "
                               "reused one failed before any response.")
                         .Register(*registry_)
                         .Add({})),
      tls_handshakes_family_(
          prometheus::BuildCounter()
              .Name("egress_tls_handshakes_total")
              .Help("TLS handshakes with upstreams (one per new https "
                    "connection), by whether they resumed a saved session.")
              .Register(*registry_)),
      tls_full_(tls_handshakes_family_.Add({{"resumed", "false"}})),
      tls_resumed_(tls_handshakes_family_.Add({{"resumed", "true"}})),
      tls_insecure_(prometheus::BuildGauge()
                        .Name("egress_tls_insecure_skip_verify")
                        .Help("1 when upstream certificates are NOT verified "
                              "(--insecure_skip_verify).")
                        .Register(*registry_)
                        .Add({})),
      failures_family_(
          prometheus::BuildCounter()
              .Name("egress_call_failures_total")
              .Help("Calls that failed, by the ErrorInfo reason the caller "
                    "got (docs/errors.md).")
              .Register(*registry_)),
      ejections_(prometheus::BuildCounter()
                     .Name("egress_origin_ejections_total")
                     .Help("Origins ejected after failing in a row (outlier "
                           "ejection; a failed probe counts again).")
                     .Register(*registry_)
                     .Add({})),
      origins_ejected_(prometheus::BuildGauge()
                           .Name("egress_origins_ejected")
                           .Help("Origins ejected now: calls to them fail at "
                                 "once with ORIGIN_EJECTED.")
                           .Register(*registry_)
                           .Add({})),
      rate_limited_family_(
          prometheus::BuildCounter()
              .Name("egress_rate_limited_total")
              .Help("Calls over a rate limit, by origin (an origins entry's "
                    "origin, else \"other\"), limit (origin: its entry's "
                    "rate_limit; caller: --rate_limit_per_caller) and outcome "
                    "(refused with RATE_LIMITED, or waited for its turn).")
              .Register(*registry_)),
      rate_fallback_(
          prometheus::BuildCounter()
              .Name("egress_ratelimit_fallback_total")
              .Help("Calls whose rate limits this replica held by its own "
                    "share because --redis could not be reached in "
                    "--redis_timeout (docs/limits.md).")
              .Register(*registry_)
              .Add({})),
      redis_trips_family_(
          prometheus::BuildCounter()
              .Name("egress_ratelimit_redis_round_trips_total")
              .Help("Round trips to --redis for rate limits: made while a call "
                    "waited (call), or leasing calls ahead in the background "
                    "(ahead).")
              .Register(*registry_)),
      redis_trips_call_(redis_trips_family_.Add({{"kind", "call"}})),
      redis_trips_ahead_(redis_trips_family_.Add({{"kind", "ahead"}})),
      redis_up_(prometheus::BuildGauge()
                    .Name("egress_ratelimit_redis_up")
                    .Help("1 while rate limits are shared through --redis; 0 "
                          "while this replica holds its share (or without "
                          "--redis).")
                    .Register(*registry_)
                    .Add({})),
      rate_replicas_(prometheus::BuildGauge()
                         .Name("egress_ratelimit_replicas")
                         .Help("Replicas sharing the rate limits, as last seen "
                               "in --redis (each one's share while it is "
                               "unreachable is 1/this).")
                         .Register(*registry_)
                         .Add({})),
      reloads_family_(prometheus::BuildCounter()
                          .Name("egress_config_reloads_total")
                          .Help("Reloads of the config file (SIGHUP or a "
                                "change), by result: applied, or refused (the "
                                "old settings stay).")
                          .Register(*registry_)),
      reloads_ok_(reloads_family_.Add({{"result", "applied"}})),
      reloads_refused_(reloads_family_.Add({{"result", "refused"}})),
      policy_denied_family_(
          prometheus::BuildCounter()
              .Name("egress_policy_denied_total")
              .Help("Calls refused by the destination policy, "
                    "by reason.")
              .Register(*registry_)),
      stream_aborts_family_(prometheus::BuildCounter()
                                .Name("egress_stream_aborts_total")
                                .Help("DoStream exchanges abandoned on purpose "
                                      "(connection closed), by reason.")
                                .Register(*registry_)),
      answer_retries_family_(
          prometheus::BuildCounter()
              .Name("egress_answer_retries_total")
              .Help("Upstream answers that asked for a retry (429 or 503 with "
                    "Retry-After, in calls that opted in), by outcome: "
                    "retried, or not for attempts, too_long or no_budget.")
              .Register(*registry_)),
      grpc_connections_(prometheus::BuildGauge()
                            .Name("egress_grpc_connections")
                            .Help("Callers' connections open on the gRPC port.")
                            .Register(*registry_)
                            .Add({})),
      grpc_refused_family_(
          prometheus::BuildCounter()
              .Name("egress_grpc_connections_refused_total")
              .Help("Callers' connections refused or closed by the gRPC "
                    "port's limits, by reason (docs/security.md).")
              .Register(*registry_)) {
  for (size_t i = 1; i < kConnectionRefusalCount; ++i) {
    grpc_refused_[i] = &grpc_refused_family_.Add(
        {{"reason", ConnectionRefusalName(static_cast<ConnectionRefusal>(i))}});
  }
  for (int i = 1; i < kRetryOutcomeCount; ++i) {
    answer_retries_[i] = &answer_retries_family_.Add(
        {{"outcome", RetryOutcomeName(static_cast<RetryOutcome>(i))}});
  }
  for (const ErrorReasonDoc& doc : ErrorReasonDocs()) {
    failures_.push_back(&failures_family_.Add({{"reason", doc.name}}));
  }
  // Every reason is present from the start, so a dashboard shows zeros, not
  // gaps.
  prometheus::BuildGauge()
      .Name("egress_build_info")
      .Help("Always 1; the version of egressd in a label.")
      .Register(*registry_)
      .Add({{"version", kEgressVersion}})
      .Set(1);
  for (int i = 0; i < kPolicyRuleCount; ++i) {
    policy_denied_[i] = &policy_denied_family_.Add(
        {{"reason", PolicyRuleName(static_cast<PolicyRule>(i))}});
  }
  policy_denied_[kPolicyRuleCount] =
      &policy_denied_family_.Add({{"reason", "other"}});
  for (int i = 0; i < kStreamAbortReasonCount; ++i) {
    stream_aborts_[i] = &stream_aborts_family_.Add(
        {{"reason", StreamAbortReasonName(static_cast<StreamAbortReason>(i))}});
  }
  for (int i = 0; i < kDropReasonCount; ++i) {
    recreations_[i] = &recreations_family_.Add(
        {{"reason", DropReasonName(static_cast<DropReason>(i))}});
  }
  std::vector<std::string> labels;
  for (const std::string& origin : origins) {
    if (origin_index_.emplace(origin, labels.size()).second) {
      labels.push_back(origin);
    }
  }
  labels.push_back("other");
  for (const std::string& origin : labels) {
    std::array<UpstreamSeries, 2> series{};
    for (RpcKind rpc : {RpcKind::kDo, RpcKind::kDoStream}) {
      const std::map<std::string, std::string> l = {
          {"origin", origin}, {"rpc", rpc == RpcKind::kDo ? "Do" : "DoStream"}};
      series[static_cast<size_t>(rpc)] = {
          &upstream_duration_family_.Add(l, LatencyBuckets()),
          &first_byte_family_.Add(l, LatencyBuckets())};
    }
    upstream_.push_back(series);
    const std::map<std::string, std::string> l = {{"origin", origin}};
    pool_.push_back(PoolSeries{
        &connections_opened_family_.Add(l), &connections_reused_family_.Add(l),
        &pool_connections_family_.Add({{"origin", origin}, {"state", "idle"}}),
        &pool_connections_family_.Add({{"origin", origin}, {"state", "busy"}}),
        std::make_shared<std::atomic<int64_t>>(0)});
  }
  for (int i = 0; i < kLeaseSourceCount; ++i) {
    leases_[i] = &leases_family_.Add(
        {{"source", LeaseSourceName(static_cast<LeaseSource>(i))}});
  }
}

size_t Metrics::OriginIndex(const std::string& origin) const {
  if (!origin_index_.empty()) {
    auto it = origin_index_.find(origin);
    if (it != origin_index_.end()) return it->second;
  }
  return upstream_.size() - 1;  // "other"
}

void Metrics::OnPoolChange(const std::string& origin, int idle_delta,
                           int busy_delta) {
  const PoolSeries& series = Pool(origin);
  if (idle_delta + busy_delta != 0) {
    series.sessions->fetch_add(idle_delta + busy_delta,
                               std::memory_order_relaxed);
  }
  if (busy_delta != 0) series.busy->Increment(busy_delta);
}

const Metrics::UpstreamSeries& Metrics::Upstream(const std::string& origin,
                                                 RpcKind rpc) const {
  return upstream_[OriginIndex(origin)][static_cast<size_t>(rpc)];
}

std::vector<prometheus::MetricFamily> Metrics::Collect() const {
  for (const PoolSeries& series : pool_) {
    // Read apart, the two may be a transition apart: never below zero.
    const double idle =
        static_cast<double>(series.sessions->load(std::memory_order_relaxed)) -
        series.busy->Value();
    series.idle->Set(std::max(0.0, idle));
  }
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& f : CollectProcessMetrics()) {
    families.push_back(std::move(f));
  }
  return families;
}

void Metrics::RecordStreamAbort(StreamAbortReason reason) {
  stream_aborts_[static_cast<int>(reason)]->Increment();
}

void Metrics::RecordPolicyDenied(std::optional<PolicyRule> rule) {
  policy_denied_[rule ? static_cast<int>(*rule) : kPolicyRuleCount]
      ->Increment();
}

void Metrics::OnSessionDropped(DropReason reason) {
  sessions_active_.Decrement();
  recreations_[static_cast<int>(reason)]->Increment();
}

void Metrics::RecordRateLimited(const std::string& origin, LimitKind limit,
                                bool waited) {
  rate_limited_family_
      .Add({{"origin", origin.empty() ? "other" : origin},
            {"limit", limit == LimitKind::kOrigin ? "origin" : "caller"},
            {"outcome", waited ? "waited" : "refused"}})
      .Increment();
}

void Metrics::RecordFailure(const absl::Status& status) {
  if (status.ok()) return;
  const std::string reason = CallerReason(status);
  const absl::Span<const ErrorReasonDoc> docs = ErrorReasonDocs();
  for (size_t i = 0; i < docs.size(); ++i) {
    if (reason == docs[i].name) {
      failures_[i]->Increment();
      return;
    }
  }
}

void Metrics::RecordCall(const std::string& method, int http_status,
                         absl::StatusCode outcome, double seconds) {
  const int m = MethodIndex(method);
  const int c = CodeClassIndex(http_status);
  int o = static_cast<int>(outcome);
  if (o < 0 || o >= kOutcomes) o = static_cast<int>(absl::StatusCode::kUnknown);
  std::atomic<prometheus::Counter*>& slot = requests_[m][c][o];
  prometheus::Counter* counter = slot.load(std::memory_order_acquire);
  if (counter == nullptr) {
    // Family::Add returns the same series for the same labels, so two threads
    // racing here store the same pointer.
    counter = &requests_family_.Add(
        {{"method", kMethodNames[m]},
         {"code_class", kCodeClassNames[c]},
         {"outcome",
          absl::StatusCodeToString(static_cast<absl::StatusCode>(o))}});
    slot.store(counter, std::memory_order_release);
  }
  counter->Increment();
  request_duration_.Observe(seconds);
}

}  // namespace egress
