// Config: every setting of egressd, with its embedded default.
//
// Every setting is declared once, in settings.h. Settings come from, in
// increasing precedence: the embedded defaults (defaults.h, the one place
// they are written),
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
#include "service/admission/inflight_limits.h"
#include "service/admission/origin_table.h"
#include "service/admission/origins.pb.h"
#include "service/admission/redis_connection.h"
#include "service/api/egress_service.h"
#include "service/base/defaults.h"
#include "service/policy/policy_files.h"
#include "service/pool/session_cache.h"
#include "service/pool/session_pool.h"
#include "service/pool/worker_pool.h"
#include "service/server/grpc_front.h"
#include "service/server/settings.h"
#include "service/transport/dns_cache.h"

namespace egress {

struct Config {
  // The units' own options, as settings.h's EGRESS_UNIT_SETTINGS fill them
  // (their defaults are the units'); EgressServer hands each to its unit,
  // adding only what is made at start (the DNS cache, the policy, ...).
  SessionCacheOptions sessions;   // and its `session`: each upstream session
  SessionPoolOptions pool;        // the shared tier of idle sessions
  WorkerPoolOptions worker_pool;  // min/max_workers: see MinWorkers()
  DnsCacheOptions dns;
  InflightLimitsOptions inflight;
  ServiceOptions service;  // and its `admission`
  GrpcFrontOptions front;  // the gRPC port, and its `guard`
  RedisOptions redis;      // the rate limits shared through Redis

  // Config's own settings (EGRESS_OWN_SETTINGS), with their defaults.
#define EGRESS_CONFIG_MEMBER(name, member, Type, Flag, def, min, max, when, \
                             help)                                          \
  Type name = def;
  EGRESS_OWN_SETTINGS(EGRESS_CONFIG_MEMBER)
#undef EGRESS_CONFIG_MEMBER

  // --workers, when set, is a fixed pool (min = max = workers).
  size_t MinWorkers() const { return workers > 0 ? workers : min_workers; }
  size_t MaxWorkers() const { return workers > 0 ? workers : max_workers; }
  // identity -> hosts and ports it may reach (config file only; see
  // caller_auth.h).
  std::map<std::string, IdentityEntry> identity_hosts;
  // Per-origin settings (config file only; admission/origins.proto).
  std::vector<egress::config::v1::OriginEntry> origins;
  // The --config file these settings were read from ("" without one): its
  // changes are reloaded (EgressServer::Reload).
  std::string config_file;

  // The settings' bounds (settings.h), then what relates settings to each
  // other, and the origins entries; the error names the setting.
  absl::Status Validate() const;
  // The origins entries loaded over `defaults` (the service-wide session
  // options); errors name config_file, the entry and the field.
  absl::StatusOr<std::shared_ptr<const OriginTable>> LoadOrigins(
      const SessionOptions& defaults) const;
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

// Every setting's bounds and when it takes effect, in settings.h's order.
extern const SettingInfo kSettings[];
extern const size_t kSettingCount;

// True when --print_config was given.
bool PrintConfigRequested();

// --policy_check=URL and --policy_check_caller, when the first was given.
struct PolicyCheckRequest {
  std::string caller;
  std::string url;
};
std::optional<PolicyCheckRequest> PolicyCheckRequested();

}  // namespace egress
