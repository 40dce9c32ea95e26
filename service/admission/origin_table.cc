#include "service/admission/origin_table.h"

#include <openssl/ssl.h>

#include <functional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/base/url.h"
#include "service/policy/destination_policy.h"

namespace egress {
namespace {

using egress::config::v1::OriginEntry;
using std::chrono::nanoseconds;

nanoseconds FromDuration(const google::protobuf::Duration& d) {
  return std::chrono::seconds(d.seconds()) + nanoseconds(d.nanos());
}

// A header name as HTTP allows it (a token).
bool IsToken(absl::string_view name) {
  if (name.empty()) return false;
  for (const char c : name) {
    if (!absl::ascii_isalnum(c) && !absl::StrContains("!#$%&'*+-.^_`|~", c)) {
      return false;
    }
  }
  return true;
}

// Headers the service owns or that frame the message: never injected.
bool IsReservedHeader(absl::string_view name) {
  for (const char* reserved :
       {"host", "content-length", "transfer-encoding", "connection",
        "keep-alive", "upgrade", "te", "trailer", "proxy-authorization",
        "proxy-connection"}) {
    if (absl::EqualsIgnoreCase(name, reserved)) return true;
  }
  return false;
}

// A short tag for a set of session options (pool_tag).
std::string Tag(const std::string& identity) {
  return absl::StrFormat("%016x", std::hash<std::string>{}(identity));
}

absl::StatusOr<std::shared_ptr<const UpstreamProxy>> LoadProxy(
    const OriginEntry::Proxy& config) {
  absl::StatusOr<Origin> url = ParseOrigin(config.url());
  if (!url.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("proxy.url: ", url.status().message()));
  }
  if (url->scheme != "http") {
    return absl::InvalidArgumentError(absl::StrCat(
        "proxy.url: \"", config.url(),
        "\": only http:// proxies are supported (https goes through them "
        "in a CONNECT tunnel)"));
  }
  auto proxy = std::make_shared<UpstreamProxy>();
  proxy->host = url->host;
  proxy->port = url->port;
  proxy->url = url->Key();
  if (!config.credentials_file().empty()) {
    absl::StatusOr<std::shared_ptr<SecretFile>> file =
        SecretFile::Open(config.credentials_file(), "proxy.credentials_file");
    if (!file.ok()) return file.status();
    absl::StatusOr<std::string> pair = (*file)->Value();
    if (!pair.ok() || !absl::StrContains(*pair, ':')) {
      return absl::InvalidArgumentError(
          absl::StrCat("proxy.credentials_file: ", config.credentials_file(),
                       ": its first line is not user:password"));
    }
    proxy->credentials = *std::move(file);
  }
  return std::shared_ptr<const UpstreamProxy>(std::move(proxy));
}

// Loads one entry into `out`; errors name the field (the caller adds where).
// With a proxy and a no_proxy list, `direct` is the route without the proxy.
absl::Status LoadEntry(const OriginEntry& entry, const SessionOptions& base,
                       OriginRoute& route, std::optional<Origin>& origin,
                       std::string& host_pattern, OriginRoute& direct,
                       std::vector<std::string>& no_proxy) {
  const std::string& match = entry.match();
  if (match.empty()) return absl::InvalidArgumentError("match: empty");
  if (absl::StrContains(match, "://")) {
    absl::StatusOr<Origin> parsed = ParseOrigin(match);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("match: ", parsed.status().message()));
    }
    origin = *std::move(parsed);
  } else {
    absl::StatusOr<std::string> pattern = ParseHostPattern(match);
    if (!pattern.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("match: ", pattern.status().message()));
    }
    host_pattern = *std::move(pattern);
  }

  SessionOptions& session = route.session;
  session = base;
  // What sets the sessions apart: every option an entry changes, spelled out
  // (no secret is in it: files are named, their contents fingerprinted).
  std::string identity;
  if (!entry.client_cert().empty() || !entry.client_key().empty()) {
    if (entry.client_cert().empty() || entry.client_key().empty()) {
      return absl::InvalidArgumentError(
          "client_cert and client_key: give both or neither");
    }
    absl::StatusOr<std::shared_ptr<const ClientIdentity>> loaded =
        ClientIdentity::Load(entry.client_cert(), entry.client_key(),
                             "client_cert");
    if (!loaded.ok()) return loaded.status();
    session.client_identity = *std::move(loaded);
    absl::StrAppend(&identity, "cert=", session.client_identity->fingerprint(),
                    ";");
  }
  if (!entry.ca_file().empty()) {
    absl::StatusOr<std::unique_ptr<TrustStore>> trust =
        TrustStore::Load(entry.ca_file(), /*system_roots=*/false, "ca_file");
    if (!trust.ok()) return trust.status();
    session.origin_trust = *std::move(trust);
    absl::StrAppend(&identity, "ca=", entry.ca_file(), ";");
  }
  if (!entry.tls_min_version().empty()) {
    if (entry.tls_min_version() == "1.2") {
      session.tls_min_version = TLS1_2_VERSION;
    } else if (entry.tls_min_version() == "1.3") {
      session.tls_min_version = TLS1_3_VERSION;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("tls_min_version: \"", entry.tls_min_version(),
                       "\" is not \"1.2\" or \"1.3\""));
    }
    absl::StrAppend(&identity, "tls=", entry.tls_min_version(), ";");
  }
  if (!entry.sni().empty()) {
    absl::StatusOr<std::string> name = ParseHostPattern(entry.sni());
    if (!name.ok() || absl::StrContains(*name, '*')) {
      return absl::InvalidArgumentError(
          absl::StrCat("sni: \"", entry.sni(), "\" is not a host name"));
    }
    session.sni = *name;
    absl::StrAppend(&identity, "sni=", session.sni, ";");
  }
  if (entry.has_connect_timeout()) {
    const nanoseconds timeout = FromDuration(entry.connect_timeout());
    if (timeout <= nanoseconds::zero()) {
      return absl::InvalidArgumentError("connect_timeout: must be positive");
    }
    session.connect_timeout = timeout;
    absl::StrAppend(&identity, "connect=", timeout.count(), ";");
  }
  if (entry.has_keepalive_timeout()) {
    const nanoseconds timeout = FromDuration(entry.keepalive_timeout());
    if (timeout <= nanoseconds::zero()) {
      return absl::InvalidArgumentError("keepalive_timeout: must be positive");
    }
    session.keepalive_timeout = timeout;
    absl::StrAppend(&identity, "keepalive=", timeout.count(), ";");
  }
  if (entry.has_max_idle()) {
    session.max_idle = entry.max_idle();
    absl::StrAppend(&identity, "idle=", entry.max_idle(), ";");
  }
  if (entry.has_proxy()) {
    absl::StatusOr<std::shared_ptr<const UpstreamProxy>> proxy =
        LoadProxy(entry.proxy());
    if (!proxy.ok()) return proxy.status();
    for (int i = 0; i < entry.proxy().no_proxy_size(); ++i) {
      absl::StatusOr<std::string> pattern =
          ParseHostPattern(entry.proxy().no_proxy(i));
      if (!pattern.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "proxy.no_proxy[", i, "]: ", pattern.status().message()));
      }
      no_proxy.push_back(*std::move(pattern));
    }
    // Sessions without the proxy (for no_proxy hosts) are tagged apart.
    direct.session = session;
    if (!identity.empty()) {
      direct.own_sessions = true;
      direct.session.pool_tag = Tag(identity);
    }
    session.proxy = *std::move(proxy);
    absl::StrAppend(&identity, "proxy=", session.proxy->url, ";");
  }
  if (!identity.empty()) {
    route.own_sessions = true;
    session.pool_tag = Tag(identity);
  }

  for (int i = 0; i < entry.inject_headers_size(); ++i) {
    const auto& header = entry.inject_headers(i);
    const std::string field = absl::StrCat("inject_headers[", i, "]");
    if (!IsToken(header.name())) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".name: \"", header.name(), "\" is not a header name"));
    }
    if (IsReservedHeader(header.name())) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name: ", header.name(),
                       " frames the request or is the service's own"));
    }
    if (header.value_file().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".value_file: empty"));
    }
    absl::StatusOr<std::shared_ptr<SecretFile>> value =
        SecretFile::Open(header.value_file(), field + ".value_file");
    if (!value.ok()) return value.status();
    InjectedHeader injected;
    injected.name = header.name();
    injected.value = *std::move(value);
    injected.callers.assign(header.callers().begin(), header.callers().end());
    injected.caller_may_set = header.caller_may_set();
    route.inject.push_back(std::move(injected));
  }

  if (entry.has_ejection()) {
    const auto& ejection = entry.ejection();
    EjectionRule& rule = route.ejection;
    if (ejection.has_consecutive_failures()) {
      rule.consecutive_failures = static_cast<int>(
          std::min<uint32_t>(ejection.consecutive_failures(), 1 << 20));
    }
    if (ejection.has_consecutive_5xx()) {
      rule.consecutive_5xx = static_cast<int>(
          std::min<uint32_t>(ejection.consecutive_5xx(), 1 << 20));
    }
    if (ejection.has_base_time()) {
      rule.base_time = FromDuration(ejection.base_time());
      if (rule.base_time <= nanoseconds::zero()) {
        return absl::InvalidArgumentError(
            "ejection.base_time: must be positive");
      }
    }
    if (ejection.has_max_time()) {
      rule.max_time = FromDuration(ejection.max_time());
    }
    if (rule.max_time < rule.base_time) {
      return absl::InvalidArgumentError(
          "ejection.max_time: shorter than ejection.base_time");
    }
  }
  if (entry.has_max_inflight()) route.max_inflight = entry.max_inflight();
  if (entry.has_rate_limit()) {
    const auto& rate = entry.rate_limit();
    absl::StatusOr<RateLimit> limit =
        ParseRateLimit(rate.rate(), rate.has_burst() ? rate.burst() : 0);
    if (!limit.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("rate_limit.rate: ", limit.status().message()));
    }
    if (rate.has_burst() && rate.burst() == 0) {
      return absl::InvalidArgumentError("rate_limit.burst: must be at least 1");
    }
    route.rate_limit = *limit;
    if (rate.has_max_wait()) {
      route.rate_max_wait = FromDuration(rate.max_wait());
      if (*route.rate_max_wait < nanoseconds::zero()) {
        return absl::InvalidArgumentError(
            "rate_limit.max_wait: must not be negative");
      }
    }
  }
  if (entry.has_proxy()) {
    // The direct route is the entry without its proxy.
    SessionOptions direct_session = std::move(direct.session);
    const bool direct_own = direct.own_sessions;
    direct = route;
    direct.session = std::move(direct_session);
    direct.own_sessions = direct_own;
  }
  return absl::OkStatus();
}

}  // namespace

bool InjectedHeader::AppliesTo(absl::string_view identity) const {
  if (callers.empty()) return true;
  for (const std::string& caller : callers) {
    if (caller == identity) return true;
  }
  return false;
}

absl::StatusOr<std::shared_ptr<const OriginTable>> OriginTable::Build(
    const std::vector<OriginEntry>& entries, const SessionOptions& defaults,
    absl::string_view source) {
  std::shared_ptr<OriginTable> table(new OriginTable);
  table->default_route_.entry = "default";
  table->default_route_.session = defaults;
  for (size_t i = 0; i < entries.size(); ++i) {
    Entry entry;
    entry.route.entry = absl::StrFormat("origins[%d] \"%s\"", i,
                                        absl::CHexEscape(entries[i].match()));
    absl::Status loaded =
        LoadEntry(entries[i], defaults, entry.route, entry.origin,
                  entry.host_pattern, entry.direct, entry.no_proxy);
    if (!loaded.ok()) {
      return absl::Status(loaded.code(),
                          absl::StrCat(source, ": ", entry.route.entry, ": ",
                                       loaded.message()));
    }
    entry.direct.entry = entry.route.entry + " (no_proxy)";
    table->entries_.push_back(std::move(entry));
  }
  return table;
}

const OriginRoute& OriginTable::Route(const Origin& origin) const {
  for (const Entry& entry : entries_) {
    if (entry.origin.has_value()
            ? *entry.origin == origin
            : HostMatches(origin.host, entry.host_pattern)) {
      for (const std::string& pattern : entry.no_proxy) {
        if (HostMatches(origin.host, pattern)) return entry.direct;
      }
      return entry.route;
    }
  }
  return default_route_;
}

std::shared_ptr<const OriginRoute> OriginTable::RouteFor(
    std::shared_ptr<const OriginTable> table, const Origin& origin) {
  const OriginRoute& route = table->Route(origin);
  return std::shared_ptr<const OriginRoute>(std::move(table), &route);
}

}  // namespace egress
