// The one declaration of every egressd setting: its name (the flag and the
// config.proto field), the Config member it sets, its type there and as a
// flag, its default (from defaults.h; {} is unset: empty, zero or false), its
// bounds (checked by Config::Validate; durations: 1 is "positive", 0 "not
// negative"), when it takes effect, and its help (`egressd --help`, the
// generated table in docs/configuration.md).
//
// Everything else is generated from this table in config.h and config.cc:
// Config's own members, the flags, reading the --config file, applying the
// flags given, --print_config, the bounds in Validate, and kSettings for the
// docs. A setting is added here, in config.proto (config_test checks that the
// two list the same names), and, when its default is not unset, in
// defaults.h; then it is wired to its unit in egress_server.cc.
//
// Thread safety: constants.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "service/base/defaults.h"

namespace egress {

// No upper bound.
inline constexpr double kNoMax = std::numeric_limits<double>::infinity();

// When a setting takes effect.
enum class SettingWhen {
  kAtStart,   // read once, at start: a change needs a restart
  kReloaded,  // a file named at start whose contents are read again on reload
  kLive,      // a new value applies on reload (SIGHUP, or the file changed)
};
inline constexpr SettingWhen kAtStart = SettingWhen::kAtStart;
inline constexpr SettingWhen kReloaded = SettingWhen::kReloaded;
inline constexpr SettingWhen kLive = SettingWhen::kLive;

// X(name, member, ConfigType, FlagType, default, min, max, when, help)
//
// EGRESS_UNIT_SETTINGS are members of a unit's own option struct in Config
// (SessionOptions, SessionPoolOptions, ...): the struct has the default (from
// defaults.h), so `default` is {} there; egress_server.cc hands each struct
// to its unit whole. EGRESS_OWN_SETTINGS are Config's own members (settings
// a unit does not take as they are, and the process's), declared with their
// default.
// clang-format off
#define EGRESS_OWN_SETTINGS(X) \
  X(metrics_listen, metrics_listen, std::string, std::string, defaults::kMetricsListen, 0, kNoMax, kAtStart, \
    "Prometheus /metrics listen address (host:port); empty disables it.") \
  X(min_workers, min_workers, size_t, uint32_t, defaults::kMinWorkers, 1, 65536, kAtStart, \
    "Worker threads always running (warm); each keeps the upstream " \
    "connection it used last, the others wait in the shared pool.") \
  X(max_workers, max_workers, size_t, uint32_t, defaults::kMaxWorkers, 1, 65536, kAtStart, \
    "Most worker threads: a call that finds none idle starts one, up to" \
    " this many (a stream holds its worker for its whole life); beyond," \
    " calls wait in the queue.") \
  X(workers, workers, size_t, uint32_t, {}, 0, 65536, kAtStart, \
    "A fixed pool of this many workers (sets --min_workers and " \
    "--max_workers); 0: the elastic pool they describe.") \
  X(max_buffered_bytes, max_buffered_bytes, size_t, uint64_t, defaults::kMaxBufferedBytes, 0, kNoMax, kAtStart, \
    "Request and response body bytes held across all calls; a call that" \
    " would go over gets RESOURCE_EXHAUSTED instead of the process " \
    "running out of memory. 0: unlimited.") \
  X(memory_limit, memory_limit, size_t, uint64_t, {}, 0, kNoMax, kAtStart, \
    "Memory egressd may use (bytes), to check its limits against at " \
    "start (a warning when they cannot fit); 0: the cgroup's limit.") \
  X(drain_timeout, drain_timeout, std::chrono::nanoseconds, absl::Duration, defaults::kDrainTimeout, 0, kNoMax, kAtStart, \
    "On SIGTERM, how long in-flight calls may take to finish.") \
  X(max_connection_age, max_connection_age, std::chrono::nanoseconds, absl::Duration, defaults::kMaxConnectionAge, 0, kNoMax, kAtStart, \
    "Callers' gRPC connections are closed (GOAWAY, with jitter) after " \
    "this long, so that they spread over new replicas after a scale-up;" \
    " 0 never closes them.") \
  X(max_connection_age_grace, max_connection_age_grace, std::chrono::nanoseconds, absl::Duration, defaults::kMaxConnectionAgeGrace, 0, kNoMax, kAtStart, \
    "After --max_connection_age, how long calls in flight on the old " \
    "connection may still take (keep it at least --max_timeout).") \
  X(max_connection_idle, max_connection_idle, std::chrono::nanoseconds, absl::Duration, defaults::kMaxConnectionIdle, 0, kNoMax, kAtStart, \
    "A caller's connection without a call this long is closed (GOAWAY);" \
    " 0 never closes it.") \
  X(max_header_list_bytes, max_header_list_bytes, size_t, uint64_t, defaults::kMaxHeaderListBytes, 1024, 1 << 20, kAtStart, \
    "Largest metadata of one call (bytes); a larger one is refused with" \
    " RESOURCE_EXHAUSTED, and a header block 4 times larger closes the " \
    "connection.") \
  X(ca_file, ca_file, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "PEM file of extra CA certificates trusted for https upstreams, on " \
    "top of the system store.") \
  X(insecure_skip_verify, insecure_skip_verify, bool, bool, {}, 0, kNoMax, kAtStart, \
    "DANGER: do not verify https upstreams' certificates or host names." \
    " Logs a warning and sets egress_tls_insecure_skip_verify to 1.") \
  X(upstream_tls_min_version, upstream_tls_min_version, std::string, std::string, defaults::kUpstreamTlsMinVersion, 0, kNoMax, kAtStart, \
    "Oldest TLS version accepted from https upstreams: 1.2 or 1.3.") \
  X(allow_cidrs, allow_cidrs, std::string, std::string, {}, 0, kNoMax, kLive, \
    "Comma-separated CIDRs the service may connect to even though they " \
    "are not public (e.g. 127.0.0.0/8,::1/128 for local tests).") \
  X(deny_cidrs, deny_cidrs, std::string, std::string, {}, 0, kNoMax, kLive, \
    "Comma-separated CIDRs never connected to; wins over --allow_cidrs.") \
  X(allow_hosts, allow_hosts, std::string, std::string, {}, 0, kNoMax, kLive, \
    "Comma-separated host names or *.suffix patterns; when set, only " \
    "these hosts may be reached.") \
  X(deny_hosts, deny_hosts, std::string, std::string, {}, 0, kNoMax, kLive, \
    "Comma-separated host names or *.suffix patterns never reached.") \
  X(allow_ports, allow_ports, std::string, std::string, defaults::kAllowPorts, 0, kNoMax, kLive, \
    "Comma-separated upstream ports callers may reach, or * for every " \
    "port; an identity's ports= replaces it for that caller.") \
  X(tls_cert, tls_cert, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "PEM certificate (chain) for TLS on the gRPC listener.") \
  X(tls_key, tls_key, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "PEM private key for --tls_cert.") \
  X(client_ca, client_ca, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "PEM roots for client certificates: requires and verifies them " \
    "(mutual TLS); the certificate's SPIFFE ID (URI SAN), else its " \
    "common name, is the caller's identity.") \
  X(auth_tokens_file, auth_tokens_file, std::string, std::string, {}, 0, kNoMax, kReloaded, \
    "File of \"TOKEN IDENTITY\" lines; when set, every call needs " \
    "\"authorization: Bearer TOKEN\" metadata. Reloaded on SIGHUP.") \
  X(identity_hosts_file, identity_hosts_file, std::string, std::string, {}, 0, kNoMax, kReloaded, \
    "File of \"IDENTITY host[,host...] [ports=PORT[,PORT...]] " \
    "[max_inflight=N]\" lines limiting what each caller may reach. " \
    "Reloaded on SIGHUP.") \
  X(allow_unauthenticated, allow_unauthenticated, bool, bool, {}, 0, kNoMax, kAtStart, \
    "Serve callers without authentication on a non-loopback --listen " \
    "(an open proxy to whoever reaches the port); without it egressd " \
    "refuses to start there unless --auth_tokens_file or --client_ca is" \
    " set.") \
  X(metrics_origins, metrics_origins, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "Origins (scheme://host:port, comma-separated) that get their own " \
    "origin label on the upstream latency histograms; every other " \
    "origin is \"other\", so the labels stay bounded.") \
  X(log_format, log_format, std::string, std::string, defaults::kLogFormat, 0, kNoMax, kAtStart, \
    "Log lines as \"text\" or as \"json\" (one JSON object per line, " \
    "the access log's fields as keys).") \
  X(retry_budget_ratio, retry_budget_ratio, double, double, defaults::kRetryBudgetRatio, 0, 1, kAtStart, \
    "Retries of answers that ask for one (429/503 with Retry-After, in " \
    "calls that opt in) are at most this share of all calls (0-1).") \
  X(retry_budget_burst, retry_budget_burst, uint32_t, uint32_t, defaults::kRetryBudgetBurst, 0, 100000, kAtStart, \
    "Such retries allowed in reserve, above --retry_budget_ratio.")
#define EGRESS_UNIT_SETTINGS(X) \
  X(connect_head_start, sessions.session.connect_head_start, std::chrono::nanoseconds, absl::Duration, {}, 1, kNoMax, kAtStart, \
    "With several addresses for a host (Happy Eyeballs), how long a " \
    "connect may take before the next address is tried; the last " \
    "address gets --connect_timeout.") \
  X(listen, front.listen, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "gRPC listen address (host:port). Beyond loopback, egressd starts " \
    "only with caller authentication (--auth_tokens_file, --client_ca) " \
    "or --allow_unauthenticated.") \
  X(worker_idle_timeout, worker_pool.idle_retire, std::chrono::nanoseconds, absl::Duration, {}, 1, kNoMax, kAtStart, \
    "A worker above --min_workers idle this long retires; its idle " \
    "connection stays in the shared pool for other workers.") \
  X(max_queue, worker_pool.max_queue, size_t, uint32_t, {}, 0, 1000000, kAtStart, \
    "Calls that may wait for a worker when --max_workers are busy, and " \
    "for one origin's or one caller's slot; more are refused with " \
    "RESOURCE_EXHAUSTED.") \
  X(max_inflight_per_origin, inflight.max_per_origin, size_t, uint32_t, {}, 0, kNoMax, kAtStart, \
    "Calls in flight to one origin (scheme, host, port); more wait in " \
    "that origin's own queue, holding no worker, until a slot frees or " \
    "their deadline passes. 0: no limit.") \
  X(max_inflight_per_caller, inflight.max_per_caller, size_t, uint32_t, {}, 0, kNoMax, kAtStart, \
    "Calls in flight from one caller identity (an identity's " \
    "max_inflight= overrides it); more wait in that caller's own queue." \
    " 0: no limit.") \
  X(rate_limit_per_caller, service.caller_rate, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "Calls per second, minute or hour each caller identity may make " \
    "(\"10/s\", \"600/min\"; a burst of one second's worth), held by this " \
    "replica; empty: none. Origins have their own (an origins entry's " \
    "rate_limit).") \
  X(rate_limit_max_wait, service.rate_max_wait, std::chrono::nanoseconds, absl::Duration, {}, 0, kNoMax, kAtStart, \
    "How long a call over a rate limit may wait for its turn, holding no " \
    "worker, within its deadline (an origins entry's rate_limit.max_wait " \
    "replaces it); 0: refused at once with RATE_LIMITED and when its turn " \
    "would come (RetryInfo).") \
  X(redis, redis.address, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "Redis (host:port) through which every replica holds the same rate " \
    "limits (origins entries' rate_limit, --rate_limit_per_caller); " \
    "empty: each replica holds its own. When it cannot be reached, each " \
    "replica holds its share (docs/limits.md).") \
  X(redis_tls, redis.tls, bool, bool, {}, 0, kNoMax, kAtStart, \
    "Speak TLS to --redis, verifying its certificate and name.") \
  X(redis_tls_ca, redis.tls_ca, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "PEM roots for --redis's certificate; empty: the system's store.") \
  X(redis_user, redis.user, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "ACL user to AUTH as to --redis (with --redis_password_file).") \
  X(redis_password_file, redis.password_file, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "File whose first line is --redis's password (AUTH); read again " \
    "when it changes, at each reconnection.") \
  X(redis_timeout, redis.timeout, std::chrono::nanoseconds, absl::Duration, {}, 1, kNoMax, kAtStart, \
    "The longest a call waits on --redis (for one round trip); slower, " \
    "or unreachable, and each replica holds its share of each limit " \
    "until Redis answers again (egress_ratelimit_fallback_total).") \
  X(redis_key_prefix, redis.key_prefix, std::string, std::string, {}, 0, kNoMax, kAtStart, \
    "Prefix of every key egressd writes in --redis (<prefix>:rate:..., " \
    "<prefix>:replicas); one per fleet sharing limits.") \
  X(redis_fallback_replicas, redis.fallback_replicas, uint32_t, uint32_t, {}, 0, 100000, kAtStart, \
    "While --redis is unreachable each replica holds 1/N of each limit:" \
    " N is this, or when 0 the replicas last seen in Redis.") \
  X(max_session_errors, sessions.session.max_errors, int, int32_t, {}, 1, kNoMax, kAtStart, \
    "Consecutive upstream failures after which a session is recreated.") \
  X(keepalive_timeout, pool.keepalive_timeout, std::chrono::nanoseconds, absl::Duration, {}, 1, kNoMax, kAtStart, \
    "Idle keep-alive connections unused this long are closed (within " \
    "about a second, by the pool's janitor).") \
  X(max_idle_per_origin, pool.max_idle_per_origin, size_t, uint32_t, {}, 1, kNoMax, kAtStart, \
    "Idle keep-alive connections kept for one origin, across all " \
    "workers; beyond it the least recently used is closed " \
    "(egress_session_recreations_total{reason=\"evicted\"}).") \
  X(max_idle_connections, pool.max_idle_connections, size_t, uint32_t, {}, 1, kNoMax, kAtStart, \
    "Idle keep-alive connections kept in all; beyond it the least " \
    "recently used is closed " \
    "(egress_session_recreations_total{reason=\"evicted\"}).") \
  X(max_requests_per_session, sessions.session.max_requests, int64_t, int64_t, {}, 0, kNoMax, kAtStart, \
    "Requests after which a session is recreated; 0 is unlimited, 1 " \
    "disables connection reuse.") \
  X(default_timeout, service.admission.default_timeout, std::chrono::nanoseconds, absl::Duration, {}, 1, kNoMax, kAtStart, \
    "Upstream timeout when the call gives neither a timeout nor a " \
    "deadline.") \
  X(max_timeout, service.admission.max_timeout, std::chrono::nanoseconds, absl::Duration, {}, 1, kNoMax, kAtStart, \
    "Upper bound on any call's upstream timeout.") \
  X(connect_timeout, sessions.session.connect_timeout, std::chrono::nanoseconds, absl::Duration, {}, 1, kNoMax, kAtStart, \
    "Timeout for opening a connection to an upstream.") \
  X(max_request_bytes, service.admission.limits.max_request_bytes, size_t, uint64_t, {}, 1, 1 << 30, kAtStart, \
    "Largest request body accepted (bytes).") \
  X(max_response_bytes, service.max_response_bytes, size_t, uint64_t, {}, 1, 1ull << 31, kAtStart, \
    "Largest upstream response body returned by Do (bytes).") \
  X(max_stream_bytes, service.max_stream_bytes, size_t, uint64_t, {}, 0, kNoMax, kAtStart, \
    "Largest body DoStream passes through (bytes); 0 is unlimited.") \
  X(stream_idle_timeout, service.stream_idle_timeout, std::chrono::nanoseconds, absl::Duration, {}, 1, kNoMax, kAtStart, \
    "DoStream: longest wait for the upstream's next bytes, or for the " \
    "caller to read the previous ones.") \
  X(max_response_line_bytes, sessions.session.head_limits.max_line_bytes, size_t, uint64_t, {}, 64, 1 << 20, kAtStart, \
    "Longest status line or header line accepted from an upstream " \
    "(bytes); a longer one fails the call with UNAVAILABLE.") \
  X(max_response_headers, sessions.session.head_limits.max_headers, size_t, uint32_t, {}, 1, 10000, kAtStart, \
    "Most header fields accepted in an upstream's response.") \
  X(max_response_head_bytes, sessions.session.head_limits.max_head_bytes, size_t, uint64_t, {}, 64, 16 << 20, kAtStart, \
    "Largest upstream response head (status line and headers, interim " \
    "1xx responses included), in bytes.") \
  X(max_connections, front.max_connections, size_t, uint32_t, {}, 1, 1000000, kAtStart, \
    "Callers' connections open on the gRPC port at most; beyond it a " \
    "new one is closed at once " \
    "(egress_grpc_connections_refused_total{reason=\"max_connections\"}).") \
  X(max_connections_per_peer, front.max_connections_per_peer, size_t, uint32_t, {}, 0, kNoMax, kAtStart, \
    "Callers' connections from one IP address at most; 0 is no per-" \
    "address limit (Unix-socket callers have none).") \
  X(handshake_timeout, front.handshake_timeout, std::chrono::nanoseconds, absl::Duration, {}, 1, kNoMax, kAtStart, \
    "A caller's connection must finish TLS and send the HTTP/2 preface " \
    "within this, or it is closed.") \
  X(max_concurrent_streams, front.guard.max_concurrent_streams, uint32_t, uint32_t, {}, 1, kNoMax, kAtStart, \
    "Calls at once on one caller's connection (HTTP/2 " \
    "SETTINGS_MAX_CONCURRENT_STREAMS); more wait in the client.") \
  X(max_resets_per_second, front.guard.resets_per_second, double, uint32_t, {}, 1, kNoMax, kAtStart, \
    "Streams a caller may reset (RST_STREAM) per second on one " \
    "connection, with a burst of 10 seconds' worth; beyond it the " \
    "connection is closed (rapid reset, CVE-2023-44487).") \
  X(max_control_frames_per_second, front.guard.control_frames_per_second, double, uint32_t, {}, 1, kNoMax, kAtStart, \
    "PING, SETTINGS, PRIORITY and empty frames a caller may send per " \
    "second on one connection, with a burst of 10 seconds' worth; " \
    "beyond it the connection is closed.") \
  X(dns_ttl, dns.ttl, std::chrono::nanoseconds, absl::Duration, {}, 1, kNoMax, kAtStart, \
    "How long a resolved address is used before the name is looked up " \
    "again.") \
  X(dns_negative_ttl, dns.negative_ttl, std::chrono::nanoseconds, absl::Duration, {}, 0, kNoMax, kAtStart, \
    "How long a failed lookup is remembered.") \
  X(dns_cache_size, dns.max_entries, size_t, uint32_t, {}, 1, kNoMax, kAtStart, \
    "Host names the DNS cache keeps.") \
  X(access_log, service.access_log, bool, bool, {}, 0, kNoMax, kAtStart, \
    "Log one line per call (caller, method, host, status, duration, " \
    "attempts, connection reuse).") \
  X(forward_trace_context, service.admission.forward_trace_context, bool, bool, {}, 0, kNoMax, kAtStart, \
    "Send the caller's x-request-id (or the generated one), traceparent" \
    " and tracestate metadata upstream as headers.")
#define EGRESS_SETTINGS(X) EGRESS_OWN_SETTINGS(X) EGRESS_UNIT_SETTINGS(X)
// clang-format on

// A setting as the docs show it.
struct SettingInfo {
  const char* name;
  double min;
  double max;
  bool duration;
  SettingWhen when;
};

}  // namespace egress
