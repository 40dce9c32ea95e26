#include "service/server/config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <cstdint>
#include <set>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "service/policy/destination_policy.h"
#include "service/server/config.pb.h"

namespace {
// The flags' defaults are Config's: written once, in defaults.h.
const egress::Config kDefaults;
}  // namespace

ABSL_FLAG(std::string, config, "",
          "Configuration file (egress.config.v1.EgressConfig): protobuf text "
          "format, or JSON when the name ends in .json. Flags given on the "
          "command line override it.");
ABSL_FLAG(bool, print_config, false,
          "Print the effective configuration (defaults, --config, flags) and "
          "exit.");
ABSL_FLAG(std::string, policy_check, "",
          "Print how the destination policy decides a call to this URL, rule "
          "by rule (with --policy_check_caller), and exit: 0 allowed, 1 "
          "refused, 2 invalid configuration.");
ABSL_FLAG(std::string, policy_check_caller, "anonymous",
          "The caller identity (token identity, SPIFFE ID or certificate "
          "common name) that --policy_check explains for.");
ABSL_FLAG(bool, access_log, kDefaults.access_log,
          "Log one line per call (caller, method, host, "
          "status, duration, attempts, connection reuse).");
ABSL_FLAG(std::string, log_format, kDefaults.log_format,
          "Log lines as \"text\" or as \"json\" (one JSON object per line, "
          "the access log's fields as keys).");
ABSL_FLAG(bool, forward_trace_context, kDefaults.forward_trace_context,
          "Send the caller's x-request-id (or the generated one), traceparent "
          "and tracestate metadata upstream as headers.");
ABSL_FLAG(double, retry_budget_ratio, kDefaults.retry_budget_ratio,
          "Retries of answers that ask for one (429/503 with Retry-After, in "
          "calls that opt in) are at most this share of all calls (0-1).");
ABSL_FLAG(uint32_t, retry_budget_burst, kDefaults.retry_budget_burst,
          "Such retries allowed in reserve, above --retry_budget_ratio.");
ABSL_FLAG(std::string, metrics_origins, kDefaults.metrics_origins,
          "Origins (scheme://host:port, comma-separated) that get their own "
          "origin label on the upstream latency histograms; every other "
          "origin is \"other\", so the labels stay bounded.");
ABSL_FLAG(std::string, listen, kDefaults.listen,
          "gRPC listen address (host:port). Beyond loopback, egressd starts "
          "only with caller authentication (--auth_tokens_file, --client_ca) "
          "or --allow_unauthenticated.");
ABSL_FLAG(std::string, metrics_listen, kDefaults.metrics_listen,
          "Prometheus /metrics listen address (host:port); empty disables it.");
ABSL_FLAG(uint32_t, min_workers, kDefaults.min_workers,
          "Worker threads always running (warm); each keeps the upstream "
          "connection it used last, the others wait in the shared pool.");
ABSL_FLAG(uint32_t, max_workers, kDefaults.max_workers,
          "Most worker threads: a call that finds none idle starts one, up to "
          "this many (a stream holds its worker for its whole life); beyond, "
          "calls wait in the queue.");
ABSL_FLAG(absl::Duration, worker_idle_timeout,
          absl::FromChrono(kDefaults.worker_idle_timeout),
          "A worker above --min_workers idle this long retires; its idle "
          "connection stays in the shared pool for other workers.");
ABSL_FLAG(uint32_t, workers, kDefaults.workers,
          "A fixed pool of this many workers (sets --min_workers and "
          "--max_workers); 0: the elastic pool they describe.");
ABSL_FLAG(uint32_t, max_inflight_per_origin, kDefaults.max_inflight_per_origin,
          "Calls in flight to one origin (scheme, host, port); more wait in "
          "that origin's own queue, holding no worker, until a slot frees or "
          "their deadline passes. 0: no limit.");
ABSL_FLAG(uint32_t, max_inflight_per_caller, kDefaults.max_inflight_per_caller,
          "Calls in flight from one caller identity (an identity's "
          "max_inflight= overrides it); more wait in that caller's own queue. "
          "0: no limit.");
ABSL_FLAG(uint64_t, max_buffered_bytes, kDefaults.max_buffered_bytes,
          "Request and response body bytes held across all calls; a call that "
          "would go over gets RESOURCE_EXHAUSTED instead of the process "
          "running out of memory. 0: unlimited.");
ABSL_FLAG(uint64_t, memory_limit, kDefaults.memory_limit,
          "Memory egressd may use (bytes), to check its limits against at "
          "start (a warning when they cannot fit); 0: the cgroup's limit.");
ABSL_FLAG(uint32_t, max_queue, kDefaults.max_queue,
          "Calls that may wait for a worker when --max_workers are busy, and "
          "for one origin's or one caller's slot; more are refused with "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, max_session_errors, kDefaults.max_session_errors,
          "Consecutive upstream failures after which a session is recreated.");
ABSL_FLAG(absl::Duration, keepalive_timeout,
          absl::FromChrono(kDefaults.keepalive_timeout),
          "Idle keep-alive connections unused this long are closed (within "
          "about a second, by the pool's janitor).");
ABSL_FLAG(uint32_t, max_idle_per_origin, kDefaults.max_idle_per_origin,
          "Idle keep-alive connections kept for one origin, across all "
          "workers; beyond it the least recently used is closed "
          "(egress_session_recreations_total{reason=\"evicted\"}).");
ABSL_FLAG(uint32_t, max_idle_connections, kDefaults.max_idle_connections,
          "Idle keep-alive connections kept in all; beyond it the least "
          "recently used is closed "
          "(egress_session_recreations_total{reason=\"evicted\"}).");
ABSL_FLAG(int64_t, max_requests_per_session, kDefaults.max_requests_per_session,
          "Requests after which a session is recreated; 0 is unlimited, 1 "
          "disables connection reuse.");
ABSL_FLAG(
    absl::Duration, default_timeout,
    absl::FromChrono(kDefaults.default_timeout),
    "Upstream timeout when the call gives neither a timeout nor a deadline.");
ABSL_FLAG(absl::Duration, max_timeout, absl::FromChrono(kDefaults.max_timeout),
          "Upper bound on any call's upstream timeout.");
ABSL_FLAG(absl::Duration, connect_timeout,
          absl::FromChrono(kDefaults.connect_timeout),
          "Timeout for opening a connection to an upstream.");
ABSL_FLAG(uint64_t, max_request_bytes, kDefaults.max_request_bytes,
          "Largest request body accepted (bytes).");
ABSL_FLAG(uint64_t, max_response_bytes, kDefaults.max_response_bytes,
          "Largest upstream response body returned by Do (bytes).");
ABSL_FLAG(uint64_t, max_stream_bytes, kDefaults.max_stream_bytes,
          "Largest body DoStream passes through (bytes); 0 is unlimited.");
ABSL_FLAG(uint64_t, max_response_line_bytes, kDefaults.max_response_line_bytes,
          "Longest status line or header line accepted from an upstream "
          "(bytes); a longer one fails the call with UNAVAILABLE.");
ABSL_FLAG(uint32_t, max_response_headers, kDefaults.max_response_headers,
          "Most header fields accepted in an upstream's response.");
ABSL_FLAG(uint64_t, max_response_head_bytes, kDefaults.max_response_head_bytes,
          "Largest upstream response head (status line and headers, interim "
          "1xx responses included), in bytes.");
ABSL_FLAG(absl::Duration, stream_idle_timeout,
          absl::FromChrono(kDefaults.stream_idle_timeout),
          "DoStream: longest wait for the upstream's next bytes, or for the "
          "caller to read the previous ones.");
ABSL_FLAG(absl::Duration, max_connection_age,
          absl::FromChrono(kDefaults.max_connection_age),
          "Callers' gRPC connections are closed (GOAWAY, with jitter) after "
          "this long, so that they spread over new replicas after a "
          "scale-up; 0 never closes them.");
ABSL_FLAG(absl::Duration, max_connection_age_grace,
          absl::FromChrono(kDefaults.max_connection_age_grace),
          "After --max_connection_age, how long calls in flight on the old "
          "connection may still take (keep it at least --max_timeout).");
ABSL_FLAG(
    uint32_t, max_connections, kDefaults.max_connections,
    "Callers' connections open on the gRPC port at most; beyond it a "
    "new one is closed at once "
    "(egress_grpc_connections_refused_total{reason=\"max_connections\"}).");
ABSL_FLAG(uint32_t, max_connections_per_peer,
          kDefaults.max_connections_per_peer,
          "Callers' connections from one IP address at most; 0 is no "
          "per-address limit (Unix-socket callers have none).");
ABSL_FLAG(absl::Duration, handshake_timeout,
          absl::FromChrono(kDefaults.handshake_timeout),
          "A caller's connection must finish TLS and send the HTTP/2 preface "
          "within this, or it is closed.");
ABSL_FLAG(absl::Duration, max_connection_idle,
          absl::FromChrono(kDefaults.max_connection_idle),
          "A caller's connection without a call this long is closed (GOAWAY); "
          "0 never closes it.");
ABSL_FLAG(uint32_t, max_concurrent_streams, kDefaults.max_concurrent_streams,
          "Calls at once on one caller's connection (HTTP/2 "
          "SETTINGS_MAX_CONCURRENT_STREAMS); more wait in the client.");
ABSL_FLAG(uint64_t, max_header_list_bytes, kDefaults.max_header_list_bytes,
          "Largest metadata of one call (bytes); a larger one is refused with "
          "RESOURCE_EXHAUSTED, and a header block 4 times larger closes the "
          "connection.");
ABSL_FLAG(uint32_t, max_resets_per_second, kDefaults.max_resets_per_second,
          "Streams a caller may reset (RST_STREAM) per second on one "
          "connection, with a burst of 10 seconds' worth; beyond it the "
          "connection is closed (rapid reset, CVE-2023-44487).");
ABSL_FLAG(uint32_t, max_control_frames_per_second,
          kDefaults.max_control_frames_per_second,
          "PING, SETTINGS, PRIORITY and empty frames a caller may send per "
          "second on one connection, with a burst of 10 seconds' worth; "
          "beyond it the connection is closed.");
ABSL_FLAG(absl::Duration, drain_timeout,
          absl::FromChrono(kDefaults.drain_timeout),
          "On SIGTERM, how long in-flight calls may take to finish.");

ABSL_FLAG(std::string, ca_file, "",
          "PEM file of extra CA certificates trusted for https upstreams, on "
          "top of the system store.");
ABSL_FLAG(bool, insecure_skip_verify, false,
          "DANGER: do not verify https upstreams' certificates or host names. "
          "Logs a warning and sets egress_tls_insecure_skip_verify to 1.");
ABSL_FLAG(std::string, upstream_tls_min_version,
          kDefaults.upstream_tls_min_version,
          "Oldest TLS version accepted from https upstreams: 1.2 or 1.3.");
ABSL_FLAG(std::string, allow_cidrs, "",
          "Comma-separated CIDRs the service may connect to even though they "
          "are not public (e.g. 127.0.0.0/8,::1/128 for local tests).");
ABSL_FLAG(std::string, deny_cidrs, "",
          "Comma-separated CIDRs never connected to; wins over --allow_cidrs.");
ABSL_FLAG(std::string, allow_hosts, "",
          "Comma-separated host names or *.suffix patterns; when set, only "
          "these hosts may be reached.");
ABSL_FLAG(std::string, deny_hosts, "",
          "Comma-separated host names or *.suffix patterns never reached.");
ABSL_FLAG(std::string, allow_ports, kDefaults.allow_ports,
          "Comma-separated upstream ports callers may reach, or * for every "
          "port; an identity's ports= replaces it for that caller.");
ABSL_FLAG(bool, allow_unauthenticated, kDefaults.allow_unauthenticated,
          "Serve callers without authentication on a non-loopback --listen "
          "(an open proxy to whoever reaches the port); without it egressd "
          "refuses to start there unless --auth_tokens_file or --client_ca "
          "is set.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (chain) for TLS on the gRPC listener.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, client_ca, "",
          "PEM roots for client certificates: requires and verifies them "
          "(mutual TLS); the certificate's SPIFFE ID (URI SAN), else its "
          "common name, is the caller's identity.");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "File of \"TOKEN IDENTITY\" lines; when set, every call needs "
          "\"authorization: Bearer TOKEN\" metadata. Reloaded on SIGHUP.");
ABSL_FLAG(std::string, identity_hosts_file, "",
          "File of \"IDENTITY host[,host...] [ports=PORT[,PORT...]] "
          "[max_inflight=N]\" lines limiting what each caller may reach. "
          "Reloaded on SIGHUP.");
ABSL_FLAG(absl::Duration, dns_ttl, absl::FromChrono(kDefaults.dns_ttl),
          "How long a resolved address is used before the name is looked up "
          "again.");
ABSL_FLAG(absl::Duration, dns_negative_ttl,
          absl::FromChrono(kDefaults.dns_negative_ttl),
          "How long a failed lookup is remembered.");
ABSL_FLAG(uint32_t, dns_cache_size, kDefaults.dns_cache_size,
          "Host names the DNS cache keeps.");

namespace egress {
namespace {

absl::Status Bad(const char* flag, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseMetricsOrigins(
    absl::string_view list) {
  constexpr size_t kMaxOrigins = 100;  // labels stay bounded
  std::vector<std::string> out;
  for (absl::string_view entry : absl::StrSplit(list, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty()) continue;
    const std::string lower = absl::AsciiStrToLower(entry);
    absl::string_view rest = lower;
    std::string scheme;
    int default_port = 0;
    if (absl::ConsumePrefix(&rest, "http://")) {
      scheme = "http";
      default_port = 80;
    } else if (absl::ConsumePrefix(&rest, "https://")) {
      scheme = "https";
      default_port = 443;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", entry, "\" is not http://host[:port] or https://host[:port]"));
    }
    absl::ConsumeSuffix(&rest, "/");
    // host, [v6], host:port or [v6]:port
    const size_t close = rest.rfind(']');
    const size_t colon = rest.rfind(':');
    absl::string_view host = rest;
    int port = default_port;
    if (colon != absl::string_view::npos &&
        (close == absl::string_view::npos || colon > close)) {
      host = rest.substr(0, colon);
      if (!absl::SimpleAtoi(rest.substr(colon + 1), &port) || port < 1 ||
          port > 65535) {
        return absl::InvalidArgumentError(
            absl::StrCat("\"", entry, "\" has an invalid port"));
      }
    }
    if (host.empty() ||
        host.find_first_of("/?#@ ") != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", entry, "\" has an invalid host"));
    }
    out.push_back(absl::StrCat(scheme, "://", host, ":", port));
    if (out.size() > kMaxOrigins) {
      return absl::InvalidArgumentError(
          absl::StrCat("more than ", kMaxOrigins, " origins"));
    }
  }
  return out;
}

absl::Status Config::Validate() const {
  using std::chrono::nanoseconds;
  if (listen.empty()) return Bad("listen", "must not be empty");
  if (!(retry_budget_ratio >= 0 && retry_budget_ratio <= 1)) {
    return Bad("retry_budget_ratio", "must be 0 to 1");
  }
  if (retry_budget_burst > 100000) {
    return Bad("retry_budget_burst", "must be at most 100000");
  }
  if (log_format != "text" && log_format != "json") {
    return Bad("log_format", "must be text or json");
  }
  if (absl::StatusOr<std::vector<std::string>> origins =
          ParseMetricsOrigins(metrics_origins);
      !origins.ok()) {
    return Bad("metrics_origins", std::string(origins.status().message()));
  }
  if (workers > 65536) return Bad("workers", "must be 0-65536");
  if (min_workers < 1) return Bad("min_workers", "must be >= 1");
  if (max_workers < min_workers || max_workers > 65536) {
    return Bad("max_workers", "must be --min_workers to 65536");
  }
  if (worker_idle_timeout <= nanoseconds::zero()) {
    return Bad("worker_idle_timeout", "must be positive");
  }
  if (max_queue > 1000000) return Bad("max_queue", "must be at most 1000000");
  if (max_session_errors < 1) return Bad("max_session_errors", "must be >= 1");
  if (keepalive_timeout <= nanoseconds::zero()) {
    return Bad("keepalive_timeout", "must be positive");
  }
  if (max_idle_per_origin < 1)
    return Bad("max_idle_per_origin", "must be >= 1");
  if (max_idle_connections < max_idle_per_origin) {
    return Bad("max_idle_connections", "must be >= --max_idle_per_origin");
  }
  if (max_requests_per_session < 0) {
    return Bad("max_requests_per_session", "must be >= 0");
  }
  if (default_timeout <= nanoseconds::zero()) {
    return Bad("default_timeout", "must be positive");
  }
  if (max_timeout <= nanoseconds::zero()) {
    return Bad("max_timeout", "must be positive");
  }
  if (connect_timeout <= nanoseconds::zero()) {
    return Bad("connect_timeout", "must be positive");
  }
  if (max_request_bytes < 1 || max_request_bytes > (1u << 30)) {
    return Bad("max_request_bytes", "must be 1 byte to 1 GiB");
  }
  if (max_response_bytes < 1 || max_response_bytes > (size_t{1} << 31)) {
    return Bad("max_response_bytes", "must be 1 byte to 2 GiB");
  }
  if (dns_ttl <= nanoseconds::zero()) return Bad("dns_ttl", "must be positive");
  if (dns_negative_ttl < nanoseconds::zero()) {
    return Bad("dns_negative_ttl", "must not be negative");
  }
  if (dns_cache_size < 1) return Bad("dns_cache_size", "must be >= 1");
  if (stream_idle_timeout <= nanoseconds::zero()) {
    return Bad("stream_idle_timeout", "must be positive");
  }
  if (tls_cert.empty() != tls_key.empty()) {
    return Bad(tls_cert.empty() ? "tls_cert" : "tls_key",
               "--tls_cert and --tls_key go together");
  }
  if (!client_ca.empty() && tls_cert.empty()) {
    return Bad("client_ca", "mutual TLS needs --tls_cert and --tls_key");
  }
  if (drain_timeout < nanoseconds::zero()) {
    return Bad("drain_timeout", "must not be negative");
  }
  if (max_connections < 1 || max_connections > 1000000) {
    return Bad("max_connections", "must be 1 to 1000000");
  }
  if (max_connections_per_peer > max_connections) {
    return Bad("max_connections_per_peer", "must be at most --max_connections");
  }
  if (handshake_timeout <= nanoseconds::zero()) {
    return Bad("handshake_timeout", "must be positive");
  }
  if (max_connection_idle < nanoseconds::zero()) {
    return Bad("max_connection_idle", "must not be negative");
  }
  if (max_concurrent_streams < 1) {
    return Bad("max_concurrent_streams", "must be >= 1");
  }
  if (max_header_list_bytes < 1024 || max_header_list_bytes > (1 << 20)) {
    return Bad("max_header_list_bytes", "must be 1024 to 1048576");
  }
  if (max_resets_per_second < 1) {
    return Bad("max_resets_per_second", "must be >= 1");
  }
  if (max_control_frames_per_second < 1) {
    return Bad("max_control_frames_per_second", "must be >= 1");
  }
  if (max_connection_age < nanoseconds::zero()) {
    return Bad("max_connection_age", "must not be negative");
  }
  if (max_connection_age_grace < nanoseconds::zero()) {
    return Bad("max_connection_age_grace", "must not be negative");
  }
  if (max_response_line_bytes < 64 || max_response_line_bytes > (1 << 20)) {
    return Bad("max_response_line_bytes", "must be 64 bytes to 1 MiB");
  }
  if (max_response_headers < 1 || max_response_headers > 10000) {
    return Bad("max_response_headers", "must be 1-10000");
  }
  if (max_response_head_bytes < max_response_line_bytes ||
      max_response_head_bytes > (16 << 20)) {
    return Bad("max_response_head_bytes",
               "must be at least --max_response_line_bytes and at most 16 MiB");
  }
  if (upstream_tls_min_version != "1.2" && upstream_tls_min_version != "1.3") {
    return Bad("upstream_tls_min_version", "must be 1.2 or 1.3");
  }
  if (absl::StatusOr<PortSet> ports = PortSet::Parse(allow_ports);
      !ports.ok()) {
    return Bad("allow_ports", std::string(ports.status().message()));
  }
  if (!IsLoopbackListen(listen) && auth_tokens_file.empty() &&
      client_ca.empty() && !allow_unauthenticated) {
    return Bad(
        "listen",
        absl::StrCat(listen,
                     " is reachable beyond this machine, and no caller "
                     "authentication is set: anyone who reaches the port could "
                     "use egressd as an open proxy. Set --auth_tokens_file or "
                     "--client_ca, listen on loopback (127.0.0.1:PORT), or "
                     "accept it with --allow_unauthenticated"));
  }
  return absl::OkStatus();
}

bool IsLoopbackListen(absl::string_view listen) {
  absl::ConsumePrefix(&listen, "dns:");
  absl::ConsumePrefix(&listen, "ipv4:");
  absl::ConsumePrefix(&listen, "ipv6:");
  // A Unix socket is reachable only through the file system.
  if (absl::StartsWith(listen, "unix:") ||
      absl::StartsWith(listen, "unix-abstract:")) {
    return true;
  }
  absl::string_view host = listen;
  if (absl::ConsumePrefix(&host, "[")) {
    host = host.substr(0, host.find(']'));
  } else {
    const size_t colon = host.rfind(':');
    if (colon != absl::string_view::npos) host = host.substr(0, colon);
  }
  if (absl::AsciiStrToLower(host) == "localhost") return true;
  in6_addr address;
  std::optional<PolicyRule> rule;
  return ParseAddress(std::string(host), address) &&
         (rule = ClassifyAddress(address)) && *rule == PolicyRule::kLoopback;
}

// The settings, by kind; each is a Config member, a flag and a config.proto
// field of the same name.
// clang-format off
#define EGRESS_SCALAR_SETTINGS(X)                                           \
  X(listen) X(metrics_listen) X(workers) X(max_queue) X(max_session_errors) \
  X(max_idle_per_origin) X(max_idle_connections) X(max_requests_per_session) \
  X(max_request_bytes) X(max_response_bytes) X(max_stream_bytes)            \
  X(ca_file) X(insecure_skip_verify) X(allow_cidrs) X(deny_cidrs)           \
  X(allow_hosts) X(deny_hosts) X(tls_cert) X(tls_key) X(client_ca)          \
  X(auth_tokens_file) X(identity_hosts_file) X(dns_cache_size)              \
  X(access_log) X(max_response_line_bytes) X(max_response_headers)          \
  X(max_response_head_bytes) X(upstream_tls_min_version) X(allow_ports)    \
  X(allow_unauthenticated) X(min_workers) X(max_workers)                    \
  X(max_inflight_per_origin) X(max_inflight_per_caller)                     \
  X(max_buffered_bytes) X(memory_limit) X(metrics_origins) X(log_format)     \
  X(forward_trace_context) X(retry_budget_ratio) X(retry_budget_burst)     \
  X(max_connections) X(max_connections_per_peer) X(max_concurrent_streams)  \
  X(max_header_list_bytes) X(max_resets_per_second)                         \
  X(max_control_frames_per_second)
#define EGRESS_DURATION_SETTINGS(X)                                          \
  X(keepalive_timeout) X(default_timeout) X(max_timeout) X(connect_timeout) \
  X(stream_idle_timeout) X(drain_timeout) X(dns_ttl) X(dns_negative_ttl)   \
  X(max_connection_age) X(max_connection_age_grace) X(worker_idle_timeout) \
  X(handshake_timeout) X(max_connection_idle)
// clang-format on

namespace {

template <typename T, typename U>
void Assign(T& out, const U& in) {
  out = static_cast<T>(in);
}
void Assign(std::string& out, const std::string& in) { out = in; }
void Assign(std::chrono::nanoseconds& out, absl::Duration in) {
  out = absl::ToChronoNanoseconds(in);
}
void Assign(std::chrono::nanoseconds& out,
            const google::protobuf::Duration& in) {
  out = std::chrono::nanoseconds(
      google::protobuf::util::TimeUtil::DurationToNanoseconds(in));
}

// Names of the flags given in `argv` ("--name=v", "--name v", "-name",
// "--noname"), up to a "--" that ends the flags. absl 20220623 keeps its own
// record of this private.
std::set<std::string> GivenFlags(int argc, char** argv) {
  std::set<std::string> given;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "-")) continue;
    absl::ConsumePrefix(&arg, "-");
    const std::string name(arg.substr(0, arg.find('=')));
    given.insert(name);
    if (absl::StartsWith(name, "no")) given.insert(name.substr(2));
  }
  return given;
}

class ParseErrors final : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (first_.empty())
      first_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

absl::Status ApplyFile(const std::string& path, Config& c) {
  absl::StatusOr<std::string> text = ReadFlagFile(path, "config");
  if (!text.ok()) return text.status();
  egress::config::v1::EgressConfig file;
  if (absl::EndsWith(path, ".json")) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    auto status =
        google::protobuf::util::JsonStringToMessage(*text, &file, options);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--config: ", path, ": ", status.message().as_string()));
    }
  } else {
    google::protobuf::TextFormat::Parser parser;
    ParseErrors errors;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(*text, &file)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--config: ", path, ":", errors.first()));
    }
  }
#define EGRESS_FROM_FILE(f) \
  if (file.has_##f()) Assign(c.f, file.f());
  EGRESS_SCALAR_SETTINGS(EGRESS_FROM_FILE)
  EGRESS_DURATION_SETTINGS(EGRESS_FROM_FILE)
#undef EGRESS_FROM_FILE
  for (const auto& [identity, list] : file.identity_hosts()) {
    IdentityEntry& entry = c.identity_hosts[identity];
    entry.hosts.assign(list.hosts().begin(), list.hosts().end());
    entry.ports = list.ports();
    if (list.has_max_inflight()) entry.max_inflight = list.max_inflight();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Config> ConfigFromFlags(int argc, char** argv) {
  const std::set<std::string> given = GivenFlags(argc, argv);
  Config c;
  const std::string file = absl::GetFlag(FLAGS_config);
  if (!file.empty()) {
    absl::Status applied = ApplyFile(file, c);
    if (!applied.ok()) return applied;
  }
#define EGRESS_FROM_FLAG(f) \
  if (given.count(#f) > 0) Assign(c.f, absl::GetFlag(FLAGS_##f));
  EGRESS_SCALAR_SETTINGS(EGRESS_FROM_FLAG)
  EGRESS_DURATION_SETTINGS(EGRESS_FROM_FLAG)
#undef EGRESS_FROM_FLAG
  return c;
}

std::string ConfigToText(const Config& c) {
  egress::config::v1::EgressConfig out;
#define EGRESS_TO_PROTO(f) out.set_##f(c.f);
  EGRESS_SCALAR_SETTINGS(EGRESS_TO_PROTO)
#undef EGRESS_TO_PROTO
#define EGRESS_TO_PROTO(f) \
  *out.mutable_##f() =     \
      google::protobuf::util::TimeUtil::NanosecondsToDuration(c.f.count());
  EGRESS_DURATION_SETTINGS(EGRESS_TO_PROTO)
#undef EGRESS_TO_PROTO
  for (const auto& [identity, entry] : c.identity_hosts) {
    auto& list = (*out.mutable_identity_hosts())[identity];
    for (const auto& h : entry.hosts) list.add_hosts(h);
    if (!entry.ports.empty()) list.set_ports(entry.ports);
    if (entry.max_inflight) list.set_max_inflight(*entry.max_inflight);
  }
  std::string text;
  google::protobuf::TextFormat::PrintToString(out, &text);
  return text;
}

bool PrintConfigRequested() { return absl::GetFlag(FLAGS_print_config); }

std::optional<PolicyCheckRequest> PolicyCheckRequested() {
  const std::string url = absl::GetFlag(FLAGS_policy_check);
  if (url.empty()) return std::nullopt;
  return PolicyCheckRequest{absl::GetFlag(FLAGS_policy_check_caller), url};
}

}  // namespace egress
