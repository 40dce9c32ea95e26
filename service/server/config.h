// Config: every setting of egressd, with its embedded default.
//
// Settings come from, in increasing precedence: the embedded defaults
// (defaults.h, the one place they are written),
// the file named by --config (config.proto: text format, or JSON for *.json;
// unknown keys are errors), and flags given on the command line.
// ConfigFromFlags() assembles them (`egressd --help` lists the flags,
// `--print_config` shows the result); tests build a Config directly. Validate()
// refuses values the service cannot run with, naming the setting.
//
// Thread safety: a plain value, read-only once the server starts.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/base/defaults.h"
#include "service/policy/policy_files.h"

namespace egress {

struct Config {
  std::string listen = defaults::kListen;
  std::string metrics_listen =
      defaults::kMetricsListen;  // empty: no metrics endpoint

  size_t min_workers = defaults::kMinWorkers;
  size_t max_workers = defaults::kMaxWorkers;
  // A worker above min_workers idle this long retires.
  std::chrono::nanoseconds worker_idle_timeout = defaults::kWorkerIdleRetire;
  size_t workers = 0;  // when set: a fixed pool (min = max = workers)
  size_t MinWorkers() const { return workers > 0 ? workers : min_workers; }
  size_t MaxWorkers() const { return workers > 0 ? workers : max_workers; }
  size_t max_queue = defaults::kMaxQueue;
  size_t max_inflight_per_origin = defaults::kMaxInflightPerOrigin;  // 0: none
  size_t max_inflight_per_caller = defaults::kMaxInflightPerCaller;  // 0: none

  int max_session_errors = defaults::kMaxSessionErrors;
  std::chrono::nanoseconds keepalive_timeout = defaults::kKeepaliveTimeout;
  size_t max_idle_per_origin = defaults::kMaxIdlePerOrigin;
  size_t max_idle_connections = defaults::kMaxIdleConnections;
  int64_t max_requests_per_session =
      defaults::kMaxRequestsPerSession;  // 0: unlimited; 1: no reuse

  std::chrono::nanoseconds default_timeout = defaults::kDefaultTimeout;
  std::chrono::nanoseconds max_timeout = defaults::kMaxTimeout;
  std::chrono::nanoseconds connect_timeout = defaults::kConnectTimeout;

  size_t max_request_bytes = defaults::kMaxRequestBytes;
  size_t max_buffered_bytes = defaults::kMaxBufferedBytes;  // 0: unlimited
  // The memory egressd may use, to check its limits against at start; 0:
  // the cgroup's limit, when it has one.
  size_t memory_limit = 0;
  size_t max_response_bytes = defaults::kMaxResponseBytes;
  size_t max_stream_bytes =
      defaults::kMaxStreamBytes;  // DoStream; 0: unlimited
  std::chrono::nanoseconds stream_idle_timeout = defaults::kStreamIdleTimeout;
  // Bounds on an upstream's response head (see response_head.h).
  size_t max_response_line_bytes = defaults::kMaxResponseLineBytes;
  size_t max_response_headers = defaults::kMaxResponseHeaders;
  size_t max_response_head_bytes = defaults::kMaxResponseHeadBytes;

  std::chrono::nanoseconds drain_timeout = defaults::kDrainTimeout;
  // Callers' connections are closed (GOAWAY) after this long, so that they
  // spread over new pods after a scale-up; calls in flight get the grace.
  // Zero: never.
  std::chrono::nanoseconds max_connection_age = defaults::kMaxConnectionAge;
  std::chrono::nanoseconds max_connection_age_grace =
      defaults::kMaxConnectionAgeGrace;

  // The gRPC port's bounds on callers' connections (GrpcFront).
  size_t max_connections = defaults::kMaxConnections;
  size_t max_connections_per_peer =
      defaults::kMaxConnectionsPerPeer;  // 0: none
  std::chrono::nanoseconds handshake_timeout = defaults::kHandshakeTimeout;
  // A connection without a call this long is closed (GOAWAY); 0: never.
  std::chrono::nanoseconds max_connection_idle = defaults::kMaxConnectionIdle;
  uint32_t max_concurrent_streams = defaults::kMaxConcurrentStreams;
  // Metadata of one call (gRPC refuses the call beyond it); a header block 4
  // times larger closes the connection.
  size_t max_header_list_bytes = defaults::kMaxHeaderListBytes;
  uint32_t max_resets_per_second = defaults::kMaxResetsPerSecond;
  uint32_t max_control_frames_per_second = defaults::kMaxControlFramesPerSecond;

  std::string ca_file;                // extra PEM roots for https upstreams
  bool insecure_skip_verify = false;  // never verify upstream certificates
  std::string upstream_tls_min_version =
      defaults::kUpstreamTlsMinVersion;  // "1.2" or "1.3"

  // Destination policy (comma-separated lists).
  std::string allow_cidrs;
  std::string deny_cidrs;
  std::string allow_hosts;
  std::string deny_hosts;
  std::string allow_ports = defaults::kAllowPorts;  // "80,443" or "*"

  // Callers.
  std::string tls_cert;   // PEM certificate chain for the gRPC listener
  std::string tls_key;    // its private key
  std::string client_ca;  // PEM roots for client certificates (mutual TLS)
  std::string auth_tokens_file;
  std::string identity_hosts_file;
  // Serve unauthenticated callers on a non-loopback --listen.
  bool allow_unauthenticated = false;

  std::chrono::nanoseconds dns_ttl = defaults::kDnsTtl;
  std::chrono::nanoseconds dns_negative_ttl = defaults::kDnsNegativeTtl;
  size_t dns_cache_size = defaults::kDnsCacheSize;

  bool access_log = defaults::kAccessLog;  // one line per call
  // Origins ("https://api.example.com:443", comma-separated) that get their
  // own `origin` label on the upstream histograms; all others are "other".
  std::string metrics_origins;
  // "text" or "json" (one JSON object per line).
  std::string log_format = defaults::kLogFormat;
  // Forward the caller's x-request-id, traceparent and tracestate upstream.
  bool forward_trace_context = defaults::kForwardTraceContext;
  // Retry-After retries: at most this share of calls, this many in reserve.
  double retry_budget_ratio = defaults::kRetryBudgetRatio;
  uint32_t retry_budget_burst = defaults::kRetryBudgetBurst;
  // identity -> hosts and ports it may reach (config file only; see
  // caller_auth.h).
  std::map<std::string, IdentityEntry> identity_hosts;

  absl::Status Validate() const;
};

// Defaults, then --config, then the flags given in `argv` (call after
// absl::ParseCommandLine, with the same argv). Errors name the file, line or
// key.
absl::StatusOr<Config> ConfigFromFlags(int argc, char** argv);

// The effective configuration as config.proto text format (--print_config).
std::string ConfigToText(const Config& config);

// True when `listen` (a gRPC listen address) is reachable only from this
// machine: a loopback address, "localhost", or a Unix socket.
bool IsLoopbackListen(absl::string_view listen);

// The origin keys of --metrics_origins ("http://host:80"), each as
// Origin::Key() spells it: scheme and host lower-case, the port always given.
absl::StatusOr<std::vector<std::string>> ParseMetricsOrigins(
    absl::string_view list);

// True when --print_config was given.
bool PrintConfigRequested();

// --policy_check=URL and --policy_check_caller, when the first was given.
struct PolicyCheckRequest {
  std::string caller;
  std::string url;
};
std::optional<PolicyCheckRequest> PolicyCheckRequested();

}  // namespace egress
