#include "service/config.h"

#include <cstdint>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051",
          "gRPC listen address (host:port).");
ABSL_FLAG(std::string, metrics_listen, "0.0.0.0:9464",
          "Prometheus /metrics listen address (host:port); empty disables it.");
ABSL_FLAG(uint32_t, workers, 64,
          "Worker threads; each owns its own cache of upstream sessions.");
ABSL_FLAG(uint32_t, max_queue, 1024,
          "Calls that may wait for a worker; more are refused with "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, max_session_errors, 3,
          "Consecutive upstream failures after which a session is recreated.");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(30),
          "Sessions idle longer than this are closed.");
ABSL_FLAG(uint32_t, max_sessions_per_worker, 256,
          "Sessions one worker keeps (least recently used are evicted).");
ABSL_FLAG(int64_t, max_requests_per_session, 0,
          "Requests after which a session is recreated; 0 is unlimited, 1 "
          "disables connection reuse.");
ABSL_FLAG(
    absl::Duration, default_timeout, absl::Seconds(30),
    "Upstream timeout when the call gives neither a timeout nor a deadline.");
ABSL_FLAG(absl::Duration, max_timeout, absl::Seconds(300),
          "Upper bound on any call's upstream timeout.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(5),
          "Timeout for opening a connection to an upstream.");
ABSL_FLAG(uint64_t, max_request_bytes, 16 << 20,
          "Largest request body accepted (bytes).");
ABSL_FLAG(uint64_t, max_response_bytes, 64 << 20,
          "Largest upstream response body returned by Do (bytes).");
ABSL_FLAG(uint64_t, max_stream_bytes, 0,
          "Largest body DoStream passes through (bytes); 0 is unlimited.");
ABSL_FLAG(absl::Duration, stream_idle_timeout, absl::Minutes(5),
          "DoStream: longest wait for the upstream's next bytes, or for the "
          "caller to read the previous ones.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(20),
          "On SIGTERM, how long in-flight calls may take to finish.");

ABSL_FLAG(std::string, ca_file, "",
          "PEM file of extra CA certificates trusted for https upstreams, on "
          "top of the system store.");
ABSL_FLAG(bool, insecure_skip_verify, false,
          "DANGER: do not verify https upstreams' certificates or host names. "
          "Logs a warning and sets egress_tls_insecure_skip_verify to 1.");
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
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (chain) for TLS on the gRPC listener.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, client_ca, "",
          "PEM roots for client certificates: requires and verifies them "
          "(mutual TLS); the certificate's common name is the caller's "
          "identity.");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "File of \"TOKEN IDENTITY\" lines; when set, every call needs "
          "\"authorization: Bearer TOKEN\" metadata. Reloaded on SIGHUP.");
ABSL_FLAG(std::string, identity_hosts_file, "",
          "File of \"IDENTITY host[,host...]\" lines limiting what each caller "
          "may reach. Reloaded on SIGHUP.");
ABSL_FLAG(absl::Duration, dns_ttl, absl::Seconds(600),
          "How long a resolved address is used before the name is looked up "
          "again.");
ABSL_FLAG(absl::Duration, dns_negative_ttl, absl::Seconds(5),
          "How long a failed lookup is remembered.");
ABSL_FLAG(uint32_t, dns_cache_size, 10000, "Host names the DNS cache keeps.");

namespace egress {
namespace {

absl::Status Bad(const char* flag, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

std::chrono::nanoseconds ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

}  // namespace

absl::Status Config::Validate() const {
  using std::chrono::nanoseconds;
  if (listen.empty()) return Bad("listen", "must not be empty");
  if (workers < 1 || workers > 10000) return Bad("workers", "must be 1-10000");
  if (max_queue > 1000000) return Bad("max_queue", "must be at most 1000000");
  if (max_session_errors < 1) return Bad("max_session_errors", "must be >= 1");
  if (keepalive_timeout <= nanoseconds::zero()) {
    return Bad("keepalive_timeout", "must be positive");
  }
  if (max_sessions_per_worker < 1) {
    return Bad("max_sessions_per_worker", "must be >= 1");
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
  return absl::OkStatus();
}

Config ConfigFromFlags() {
  Config c;
  c.listen = absl::GetFlag(FLAGS_listen);
  c.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  c.workers = absl::GetFlag(FLAGS_workers);
  c.max_queue = absl::GetFlag(FLAGS_max_queue);
  c.max_session_errors = absl::GetFlag(FLAGS_max_session_errors);
  c.keepalive_timeout = ToChrono(absl::GetFlag(FLAGS_keepalive_timeout));
  c.max_sessions_per_worker = absl::GetFlag(FLAGS_max_sessions_per_worker);
  c.max_requests_per_session = absl::GetFlag(FLAGS_max_requests_per_session);
  c.default_timeout = ToChrono(absl::GetFlag(FLAGS_default_timeout));
  c.max_timeout = ToChrono(absl::GetFlag(FLAGS_max_timeout));
  c.connect_timeout = ToChrono(absl::GetFlag(FLAGS_connect_timeout));
  c.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  c.max_response_bytes = absl::GetFlag(FLAGS_max_response_bytes);
  c.max_stream_bytes = absl::GetFlag(FLAGS_max_stream_bytes);
  c.stream_idle_timeout = ToChrono(absl::GetFlag(FLAGS_stream_idle_timeout));
  c.drain_timeout = ToChrono(absl::GetFlag(FLAGS_drain_timeout));
  c.ca_file = absl::GetFlag(FLAGS_ca_file);
  c.insecure_skip_verify = absl::GetFlag(FLAGS_insecure_skip_verify);
  c.allow_cidrs = absl::GetFlag(FLAGS_allow_cidrs);
  c.deny_cidrs = absl::GetFlag(FLAGS_deny_cidrs);
  c.allow_hosts = absl::GetFlag(FLAGS_allow_hosts);
  c.deny_hosts = absl::GetFlag(FLAGS_deny_hosts);
  c.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  c.tls_key = absl::GetFlag(FLAGS_tls_key);
  c.client_ca = absl::GetFlag(FLAGS_client_ca);
  c.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  c.identity_hosts_file = absl::GetFlag(FLAGS_identity_hosts_file);
  c.dns_ttl = ToChrono(absl::GetFlag(FLAGS_dns_ttl));
  c.dns_negative_ttl = ToChrono(absl::GetFlag(FLAGS_dns_negative_ttl));
  c.dns_cache_size = absl::GetFlag(FLAGS_dns_cache_size);
  return c;
}

}  // namespace egress
