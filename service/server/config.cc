#include "service/server/config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <cstdint>
#include <set>
#include <string>
#include <type_traits>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "service/admission/origin_table.h"
#include "service/admission/rate_limits.h"
#include "service/admission/redis_connection.h"
#include "service/base/url.h"
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
namespace egress {
namespace {

// A flag's default, from Config's (defaults.h).
template <typename Flag, typename T>
Flag FlagDefault(const T& value) {
  if constexpr (std::is_same_v<T, std::chrono::nanoseconds>) {
    return absl::FromChrono(value);
  } else {
    return static_cast<Flag>(value);
  }
}

}  // namespace
}  // namespace egress

// Every setting's flag (settings.h).
#define EGRESS_FLAG(name, member, Type, Flag, def, min, max, when, help) \
  ABSL_FLAG(Flag, name, egress::FlagDefault<Flag>(kDefaults.member), help);
EGRESS_SETTINGS(EGRESS_FLAG)
#undef EGRESS_FLAG

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
    // The parser requests' URLs go through: the same origin, spelled alike.
    absl::StatusOr<Origin> origin = ParseOrigin(entry);
    if (!origin.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", entry, "\" ", origin.status().message()));
    }
    out.push_back(origin->Key());
    if (out.size() > kMaxOrigins) {
      return absl::InvalidArgumentError(
          absl::StrCat("more than ", kMaxOrigins, " origins"));
    }
  }
  return out;
}

namespace {

// A setting within [min, max] (settings.h); strings and booleans have none.
template <typename T>
absl::Status CheckBounds(const char* name, const T& value, double min,
                         double max) {
  if constexpr (std::is_same_v<T, std::chrono::nanoseconds>) {
    if (value.count() >= min) return absl::OkStatus();
    return Bad(name, min > 0 ? "must be positive" : "must not be negative");
  } else if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    const double v = static_cast<double>(value);
    if (v >= min && v <= max) return absl::OkStatus();
    if (max == kNoMax)
      return Bad(name, absl::StrFormat("must be >= %.15g", min));
    return Bad(name, absl::StrFormat("must be %.15g to %.15g", min, max));
  } else {
    return absl::OkStatus();
  }
}

}  // namespace

absl::Status Config::Validate() const {
#define EGRESS_BOUNDS(name, member, Type, Flag, def, min, max, when, help) \
  if (absl::Status s = CheckBounds(#name, member, min, max); !s.ok()) {    \
    return s;                                                              \
  }
  EGRESS_SETTINGS(EGRESS_BOUNDS)
#undef EGRESS_BOUNDS
  if (front.listen.empty()) return Bad("listen", "must not be empty");
  if (log_format != "text" && log_format != "json") {
    return Bad("log_format", "must be text or json");
  }
  if (absl::StatusOr<std::vector<std::string>> origins =
          ParseMetricsOrigins(metrics_origins);
      !origins.ok()) {
    return Bad("metrics_origins", std::string(origins.status().message()));
  }
  if (max_workers < min_workers) {
    return Bad("max_workers", "must be --min_workers to 65536");
  }
  if (!service.caller_rate.empty()) {
    if (absl::StatusOr<RateLimit> rate = ParseRateLimit(service.caller_rate, 0);
        !rate.ok()) {
      return Bad("rate_limit_per_caller", std::string(rate.status().message()));
    }
  }
  if (redis.address.empty()) {
    for (const auto& [flag, set] :
         {std::pair<const char*, bool>{"redis_tls", redis.tls},
          {"redis_tls_ca", !redis.tls_ca.empty()},
          {"redis_user", !redis.user.empty()},
          {"redis_password_file", !redis.password_file.empty()},
          {"redis_fallback_replicas", redis.fallback_replicas > 0}}) {
      if (set) return Bad(flag, "needs --redis");
    }
  } else if (absl::StatusOr<std::unique_ptr<RedisConnection>> redis_checked =
                 RedisConnection::Create(redis);
             !redis_checked.ok()) {
    return redis_checked.status();  // its message names the flag
  }
  if (pool.max_idle_connections < pool.max_idle_per_origin) {
    return Bad("max_idle_connections", "must be >= --max_idle_per_origin");
  }
  if (tls_cert.empty() != tls_key.empty()) {
    return Bad(tls_cert.empty() ? "tls_cert" : "tls_key",
               "--tls_cert and --tls_key go together");
  }
  if (!client_ca.empty() && tls_cert.empty()) {
    return Bad("client_ca", "mutual TLS needs --tls_cert and --tls_key");
  }
  if (front.max_connections_per_peer > front.max_connections) {
    return Bad("max_connections_per_peer", "must be at most --max_connections");
  }
  if (sessions.session.head_limits.max_head_bytes <
      sessions.session.head_limits.max_line_bytes) {
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
  if (!IsLoopbackListen(front.listen) && auth_tokens_file.empty() &&
      client_ca.empty() && !allow_unauthenticated) {
    return Bad(
        "listen",
        absl::StrCat(front.listen,
                     " is reachable beyond this machine, and no caller "
                     "authentication is set: anyone who reaches the port could "
                     "use egressd as an open proxy. Set --auth_tokens_file or "
                     "--client_ca, listen on loopback (127.0.0.1:PORT), or "
                     "accept it with --allow_unauthenticated"));
  }
  // The origins entries: their patterns, files and certificates.
  if (absl::StatusOr<std::shared_ptr<const OriginTable>> table =
          LoadOrigins(SessionOptions{});
      !table.ok()) {
    return table.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const OriginTable>> Config::LoadOrigins(
    const SessionOptions& defaults) const {
  return OriginTable::Build(origins, defaults,
                            config_file.empty() ? "--config" : config_file);
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

// Sets a field of `out` to `value`: `set` for a scalar, `mutable_field` for a
// duration. (Generic lambdas: only the one called is compiled.)
template <typename T, typename Set, typename Mutable>
void ToProto(const T& value, Set set, Mutable mutable_field,
             egress::config::v1::EgressConfig& out) {
  if constexpr (std::is_same_v<T, std::chrono::nanoseconds>) {
    *mutable_field(out) =
        google::protobuf::util::TimeUtil::NanosecondsToDuration(value.count());
  } else {
    set(out, value);
  }
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
#define EGRESS_FROM_FILE(name, member, ...) \
  if (file.has_##name()) Assign(c.member, file.name());
  EGRESS_SETTINGS(EGRESS_FROM_FILE)
#undef EGRESS_FROM_FILE
  for (const auto& [identity, list] : file.identity_hosts()) {
    IdentityEntry& entry = c.identity_hosts[identity];
    entry.hosts.assign(list.hosts().begin(), list.hosts().end());
    entry.ports = list.ports();
    if (list.has_max_inflight()) entry.max_inflight = list.max_inflight();
  }
  c.origins.assign(file.origins().begin(), file.origins().end());
  c.config_file = path;
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
#define EGRESS_FROM_FLAG(name, member, ...) \
  if (given.count(#name) > 0) Assign(c.member, absl::GetFlag(FLAGS_##name));
  EGRESS_SETTINGS(EGRESS_FROM_FLAG)
#undef EGRESS_FROM_FLAG
  return c;
}

std::string ConfigToText(const Config& c) {
  egress::config::v1::EgressConfig out;
#define EGRESS_TO_PROTO(name, member, ...)                       \
  ToProto(                                                       \
      c.member, [](auto& o, const auto& v) { o.set_##name(v); }, \
      [](auto& o) { return o.mutable_##name(); }, out);
  EGRESS_SETTINGS(EGRESS_TO_PROTO)
#undef EGRESS_TO_PROTO
  for (const auto& [identity, entry] : c.identity_hosts) {
    auto& list = (*out.mutable_identity_hosts())[identity];
    for (const auto& h : entry.hosts) list.add_hosts(h);
    if (!entry.ports.empty()) list.set_ports(entry.ports);
    if (entry.max_inflight) list.set_max_inflight(*entry.max_inflight);
  }
  for (const auto& origin : c.origins) *out.add_origins() = origin;
  std::string text;
  google::protobuf::TextFormat::PrintToString(out, &text);
  return text;
}

const SettingInfo kSettings[] = {
#define EGRESS_INFO(name, member, Type, Flag, def, min, max, when, help) \
  {#name, min, max, std::is_same_v<Type, std::chrono::nanoseconds>, when},
    EGRESS_SETTINGS(EGRESS_INFO)
#undef EGRESS_INFO
};
const size_t kSettingCount = sizeof(kSettings) / sizeof(kSettings[0]);

bool PrintConfigRequested() { return absl::GetFlag(FLAGS_print_config); }

std::optional<PolicyCheckRequest> PolicyCheckRequested() {
  const std::string url = absl::GetFlag(FLAGS_policy_check);
  if (url.empty()) return std::nullopt;
  return PolicyCheckRequest{absl::GetFlag(FLAGS_policy_check_caller), url};
}

}  // namespace egress
