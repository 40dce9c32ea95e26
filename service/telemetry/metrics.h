// Metrics: every Prometheus family of the service, declared once, here.
//
// Series that the request path touches are looked up once and kept: fixed-label
// series at construction, and egress_requests_total{method,code_class,outcome}
// lazily in a table of atomic pointers (Family::Add takes a mutex; the table
// makes every later lookup lock-free). Metrics is also the SessionObserver the
// workers report connection and session events to.
//
// Every family, its type, labels and meaning are listed in docs/metrics.md
// (tests/service/metrics_test.cc checks that the list is complete). Reason
// labels come from typed enums (DropReason, PolicyRule, StreamAbortReason),
// so a producer cannot misspell one.
//
// Thread safety: all methods are thread-safe.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "service/base/error_details.h"
#include "service/front/h2_guard.h"
#include "service/policy/destination_policy.h"
#include "service/pool/answer_retry.h"
#include "service/pool/stream_pump.h"
#include "service/transport/session_observer.h"

namespace egress {

inline constexpr char kEgressVersion[] = "0.1.0";

// The limits a call may wait for (the `limit` label).
enum class LimitKind { kOrigin, kCaller };

// The RPC a call came by (the `rpc` label).
enum class RpcKind { kDo, kDoStream };

class Metrics final : public SessionObserver {
 public:
  // `origins`: origin keys (Origin::Key()) with their own `origin` label on
  // the upstream histograms; every other origin is "other".
  explicit Metrics(const std::vector<std::string>& origins = {});
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Every series to expose: the registry's, the process_* ones, and
  // egress_build_info{version}. Thread-safe.
  std::vector<prometheus::MetricFamily> Collect() const;

  // Counts one finished call. `http_status` is 0 when no upstream answer came.
  // Methods outside the standard set are labelled "OTHER" to bound the labels.
  void RecordCall(const std::string& method, int http_status,
                  absl::StatusCode outcome, double seconds);
  // A DoStream exchange abandoned on purpose.
  void RecordStreamAbort(StreamAbortReason reason);
  // An answer that asked for a retry (Retry-After), by what became of it.
  void RecordAnswerRetry(RetryOutcome outcome) {
    answer_retries_[static_cast<size_t>(outcome)]->Increment();
  }
  // A call refused by the destination policy, by rule (nullopt: "other").
  void RecordPolicyDenied(std::optional<PolicyRule> rule);
  // True when some origins have their own label: only then does a caller need
  // to pass the origin (else "" is "other" and saves making the key).
  bool labels_origins() const { return !origin_index_.empty(); }
  // The upstream exchange's time, and its time to first byte (the head), by
  // origin (bounded: see the constructor) and RPC.
  void RecordUpstreamSeconds(const std::string& origin, RpcKind rpc,
                             double seconds) {
    Upstream(origin, rpc).duration->Observe(seconds);
  }
  void RecordFirstByteSeconds(const std::string& origin, RpcKind rpc,
                              double seconds) {
    Upstream(origin, rpc).first_byte->Observe(seconds);
  }
  // Time a gRPC thread spent in a cancel callback (aborting the exchange):
  // it must never wait on the upstream.
  void RecordCancelCallbackSeconds(double seconds) {
    cancel_callback_.Observe(seconds);
  }

  prometheus::Gauge& requests_in_flight() { return requests_in_flight_; }
  prometheus::Gauge& queue_depth() { return queue_depth_; }
  // Worker threads running, and those serving a call (a stream holds one
  // with almost no CPU: scale on their ratio, not on CPU alone).
  prometheus::Gauge& workers() { return workers_; }
  prometheus::Gauge& workers_busy() { return workers_busy_; }
  // --max_workers: busy / max is how full a replica is (the HPA's metric).
  prometheus::Gauge& workers_max() { return workers_max_; }
  // Calls waiting for a slot of their origin or of their caller.
  prometheus::Gauge& limit_waiting(LimitKind kind) {
    return kind == LimitKind::kOrigin ? waiting_origin_ : waiting_caller_;
  }
  // Callers' connections open on the gRPC port (GrpcFront).
  prometheus::Gauge& grpc_connections() { return grpc_connections_; }
  // A caller's connection refused or closed by the gRPC port's limits.
  void RecordConnectionRefused(ConnectionRefusal reason) {
    grpc_refused_[static_cast<size_t>(reason)]->Increment();
  }
  // 1 while --insecure_skip_verify is on.
  prometheus::Gauge& tls_insecure_skip_verify() { return tls_insecure_; }
  // A call that failed, by its ErrorInfo reason.
  void RecordFailure(const absl::Status& status);
  // Outlier ejection (admission/outlier_ejection.h).
  void RecordEjection() { ejections_.Increment(); }
  prometheus::Gauge& origins_ejected() { return origins_ejected_; }
  // A call over a rate limit (its origin entry's or its caller's), refused
  // or made to wait; `origin` is the origin's key when an origins entry
  // matched it (the entries bound the labels), else "".
  void RecordRateLimited(const std::string& origin, LimitKind limit,
                         bool waited);
  // Rate limits shared through Redis (admission/shared_rate_limits.h).
  void RecordRateFallback() { rate_fallback_.Increment(); }
  void RecordRedisRoundTrip(bool ahead) {
    (ahead ? redis_trips_ahead_ : redis_trips_call_).Increment();
  }
  prometheus::Gauge& redis_up() { return redis_up_; }
  prometheus::Gauge& rate_replicas() { return rate_replicas_; }
  // A reload of the config file: applied, or refused (the old one stays).
  void RecordConfigReload(bool applied) {
    (applied ? reloads_ok_ : reloads_refused_).Increment();
  }

  // SessionObserver.
  void OnSessionCreated() override { sessions_active_.Increment(); }
  void OnSessionDropped(DropReason reason) override;
  void OnPoolChange(const std::string& origin, int idle_delta,
                    int busy_delta) override;
  void OnLease(LeaseSource source) override {
    leases_[static_cast<size_t>(source)]->Increment();
  }
  void OnConnectionOpened(const std::string& origin, bool tls,
                          bool resumed) override {
    Pool(origin).opened->Increment();
    if (tls) (resumed ? tls_resumed_ : tls_full_).Increment();
  }
  void OnConnectionReused(const std::string& origin) override {
    Pool(origin).reused->Increment();
  }
  void OnStaleRetry() override { stale_retries_.Increment(); }

 private:
  static constexpr int kMethods = 9;      // GET ... TRACE, OTHER
  static constexpr int kCodeClasses = 6;  // none, 1xx .. 5xx
  static constexpr int kOutcomes = 17;    // gRPC codes 0..16

  struct UpstreamSeries {
    prometheus::Histogram* duration;
    prometheus::Histogram* first_byte;
  };
  // The connection pool's series of one origin class.
  // Idle sessions are not counted per call: `sessions` (idle + busy) changes
  // only when a session is made or dropped, `busy` twice per call, and idle
  // is set to their difference when /metrics is read.
  struct PoolSeries {
    prometheus::Counter* opened;
    prometheus::Counter* reused;
    prometheus::Gauge* idle;
    prometheus::Gauge* busy;
    std::shared_ptr<std::atomic<int64_t>> sessions;
  };
  // The index of `origin`'s label in upstream_ and pool_ ("other" is last).
  size_t OriginIndex(const std::string& origin) const;
  // The series of `origin` (or "other") and `rpc`; no lock.
  const UpstreamSeries& Upstream(const std::string& origin, RpcKind rpc) const;
  const PoolSeries& Pool(const std::string& origin) const {
    return pool_[OriginIndex(origin)];
  }

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_family_;
  prometheus::Histogram& request_duration_;
  prometheus::Family<prometheus::Histogram>& upstream_duration_family_;
  prometheus::Family<prometheus::Histogram>& first_byte_family_;
  // Index of each labelled origin in upstream_; "other" is last. Written only
  // by the constructor.
  absl::flat_hash_map<std::string, size_t> origin_index_;
  std::vector<std::array<UpstreamSeries, 2>> upstream_;  // [origin][rpc]
  prometheus::Histogram& cancel_callback_;
  prometheus::Family<prometheus::Counter>& recreations_family_;
  std::array<prometheus::Counter*, kDropReasonCount> recreations_;
  prometheus::Gauge& sessions_active_;
  prometheus::Gauge& requests_in_flight_;
  prometheus::Gauge& queue_depth_;
  prometheus::Gauge& workers_;
  prometheus::Gauge& workers_busy_;
  prometheus::Gauge& workers_max_;
  prometheus::Family<prometheus::Gauge>& limit_waiting_family_;
  prometheus::Gauge& waiting_origin_;
  prometheus::Gauge& waiting_caller_;
  prometheus::Family<prometheus::Counter>& connections_reused_family_;
  prometheus::Family<prometheus::Counter>& connections_opened_family_;
  prometheus::Family<prometheus::Gauge>& pool_connections_family_;
  std::vector<PoolSeries> pool_;  // [origin]
  prometheus::Family<prometheus::Counter>& leases_family_;
  std::array<prometheus::Counter*, kLeaseSourceCount> leases_{};
  prometheus::Counter& stale_retries_;
  prometheus::Family<prometheus::Counter>& tls_handshakes_family_;
  prometheus::Counter& tls_full_;
  prometheus::Counter& tls_resumed_;
  prometheus::Gauge& tls_insecure_;
  prometheus::Family<prometheus::Counter>& failures_family_;
  std::vector<prometheus::Counter*> failures_;  // by ErrorReasonDocs() index
  prometheus::Counter& ejections_;
  prometheus::Gauge& origins_ejected_;
  prometheus::Family<prometheus::Counter>& rate_limited_family_;
  prometheus::Counter& rate_fallback_;
  prometheus::Family<prometheus::Counter>& redis_trips_family_;
  prometheus::Counter& redis_trips_call_;
  prometheus::Counter& redis_trips_ahead_;
  prometheus::Gauge& redis_up_;
  prometheus::Gauge& rate_replicas_;
  prometheus::Family<prometheus::Counter>& reloads_family_;
  prometheus::Counter& reloads_ok_;
  prometheus::Counter& reloads_refused_;
  prometheus::Family<prometheus::Counter>& policy_denied_family_;
  prometheus::Family<prometheus::Counter>& stream_aborts_family_;
  std::array<prometheus::Counter*, kStreamAbortReasonCount> stream_aborts_;
  prometheus::Family<prometheus::Counter>& answer_retries_family_;
  prometheus::Gauge& grpc_connections_;
  prometheus::Family<prometheus::Counter>& grpc_refused_family_;
  // By ConnectionRefusal; kNone is never counted (nullptr).
  std::array<prometheus::Counter*, kConnectionRefusalCount> grpc_refused_{};
  // By RetryOutcome; kNotAsked is never counted (nullptr).
  std::array<prometheus::Counter*, kRetryOutcomeCount> answer_retries_{};
  // One per PolicyRule, then "other".
  std::array<prometheus::Counter*, kPolicyRuleCount + 1> policy_denied_;
  std::atomic<prometheus::Counter*> requests_[kMethods][kCodeClasses]
                                             [kOutcomes] = {};
};

}  // namespace egress
