// Config: every setting of egressd, with its embedded default.
//
// Settings come from, in increasing precedence: the embedded defaults below,
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
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace egress {

struct Config {
  std::string listen = "0.0.0.0:50051";
  std::string metrics_listen = "0.0.0.0:9464";  // empty: no metrics endpoint

  size_t workers = 64;
  size_t max_queue = 1024;

  int max_session_errors = 3;
  std::chrono::nanoseconds keepalive_timeout = std::chrono::seconds(30);
  size_t max_sessions_per_worker = 256;
  int64_t max_requests_per_session = 0;  // 0: unlimited; 1: no reuse

  std::chrono::nanoseconds default_timeout = std::chrono::seconds(30);
  std::chrono::nanoseconds max_timeout = std::chrono::seconds(300);
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(5);

  size_t max_request_bytes = 16 << 20;
  size_t max_response_bytes = 64 << 20;
  size_t max_stream_bytes = 0;  // DoStream; 0: unlimited
  std::chrono::nanoseconds stream_idle_timeout = std::chrono::minutes(5);
  // Bounds on an upstream's response head (see response_head.h).
  size_t max_response_line_bytes = 16 << 10;
  size_t max_response_headers = 200;
  size_t max_response_head_bytes = 64 << 10;

  std::chrono::nanoseconds drain_timeout = std::chrono::seconds(20);
  // Callers' connections are closed (GOAWAY) after this long, so that they
  // spread over new pods after a scale-up; calls in flight get the grace.
  // Zero: never.
  std::chrono::nanoseconds max_connection_age = std::chrono::minutes(5);
  std::chrono::nanoseconds max_connection_age_grace = std::chrono::minutes(5);

  std::string ca_file;                // extra PEM roots for https upstreams
  bool insecure_skip_verify = false;  // never verify upstream certificates
  std::string upstream_tls_min_version = "1.2";  // "1.2" or "1.3"

  // Destination policy (comma-separated lists).
  std::string allow_cidrs;
  std::string deny_cidrs;
  std::string allow_hosts;
  std::string deny_hosts;

  // Callers.
  std::string tls_cert;   // PEM certificate chain for the gRPC listener
  std::string tls_key;    // its private key
  std::string client_ca;  // PEM roots for client certificates (mutual TLS)
  std::string auth_tokens_file;
  std::string identity_hosts_file;

  std::chrono::nanoseconds dns_ttl = std::chrono::seconds(600);
  std::chrono::nanoseconds dns_negative_ttl = std::chrono::seconds(5);
  size_t dns_cache_size = 10000;

  bool access_log = true;  // one line per call
  // identity -> hosts it may reach (config file only; see caller_auth.h).
  std::map<std::string, std::vector<std::string>> identity_hosts;

  absl::Status Validate() const;
};

// Defaults, then --config, then the flags given in `argv` (call after
// absl::ParseCommandLine, with the same argv). Errors name the file, line or
// key.
absl::StatusOr<Config> ConfigFromFlags(int argc, char** argv);

// The effective configuration as config.proto text format (--print_config).
std::string ConfigToText(const Config& config);

// True when --print_config was given.
bool PrintConfigRequested();

}  // namespace egress
