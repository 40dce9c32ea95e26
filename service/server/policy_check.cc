#include "service/server/policy_check.h"

#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "service/admission/caller_auth.h"
#include "service/admission/origin_table.h"
#include "service/admission/request_validation.h"

namespace egress {

absl::StatusOr<std::unique_ptr<DestinationPolicy>> PolicyFromConfig(
    const Config& config) {
  PolicyOptions options;
  for (auto [list, out, flag] :
       {std::tuple{&config.allow_cidrs, &options.allow_cidrs, "allow_cidrs"},
        std::tuple{&config.deny_cidrs, &options.deny_cidrs, "deny_cidrs"}}) {
    absl::StatusOr<std::vector<Cidr>> cidrs = ParseCidrList(*list, flag);
    if (!cidrs.ok()) return cidrs.status();
    *out = *std::move(cidrs);
  }
  options.allow_hosts =
      absl::StrSplit(config.allow_hosts, ',', absl::SkipWhitespace());
  options.deny_hosts =
      absl::StrSplit(config.deny_hosts, ',', absl::SkipWhitespace());
  absl::StatusOr<PortSet> ports = PortSet::Parse(config.allow_ports);
  if (!ports.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--allow_ports: ", ports.status().message()));
  }
  options.allow_ports = *std::move(ports);
  return DestinationPolicy::Create(std::move(options));
}

absl::StatusOr<PolicyReport> ExplainPolicy(const Config& config,
                                           const std::string& caller,
                                           const std::string& url,
                                           Resolver& resolver) {
  absl::StatusOr<std::unique_ptr<DestinationPolicy>> policy =
      PolicyFromConfig(config);
  if (!policy.ok()) return policy.status();
  absl::StatusOr<std::unique_ptr<CallerAuth>> auth =
      CallerAuth::Create(config.auth_tokens_file, config.identity_hosts_file,
                         config.identity_hosts);
  if (!auth.ok()) return auth.status();

  PolicyReport report;
  std::vector<std::string> lines = {absl::StrCat("caller: ", caller),
                                    absl::StrCat("url: ", url)};
  auto finish = [&](const absl::Status& refusal) {
    report.allowed = refusal.ok();
    lines.push_back(refusal.ok()
                        ? "verdict: ALLOWED"
                        : absl::StrCat("verdict: REFUSED (",
                                       absl::StatusCodeToString(refusal.code()),
                                       "): ", refusal.message()));
    report.text = absl::StrCat(absl::StrJoin(lines, "\n"), "\n");
    return report;
  };
  absl::StatusOr<UpstreamRequest> request = ParseUrl(url, ValidationLimits{});
  if (!request.ok()) return finish(request.status());
  const Origin& origin = request->origin;
  std::shared_ptr<const CallerRules> rules = (*auth)->RulesOf(caller);
  absl::Status allowed = (*policy)->CheckDestination(origin.host, origin.port,
                                                     rules.get(), &lines);
  if (!allowed.ok()) return finish(allowed);

  // The origin's entry: what egress adds and how it connects. Injected
  // values are never printed, only where they come from.
  absl::StatusOr<std::shared_ptr<const OriginTable>> table =
      config.LoadOrigins(SessionOptions{});
  if (!table.ok()) return table.status();
  const OriginRoute& route = (*table)->Route(origin);
  if (!config.origins.empty()) {
    lines.push_back(absl::StrCat("origin entry: ", route.entry));
  }
  for (const InjectedHeader& header : route.inject) {
    lines.push_back(
        absl::StrCat("injects header ", header.name, ": <redacted, from ",
                     header.value->path(), ">",
                     header.AppliesTo(caller) ? "" : " (not for this caller)"));
  }
  if (route.session.client_identity != nullptr) {
    lines.push_back(absl::StrCat(
        "client certificate: sha256 ",
        route.session.client_identity->fingerprint().substr(0, 16), "..."));
  }
  if (const UpstreamProxy* proxy = route.session.proxy.get()) {
    lines.push_back(
        absl::StrCat("proxy: ", proxy->url,
                     proxy->credentials != nullptr
                         ? absl::StrCat(" (credentials: <redacted, from ",
                                        proxy->credentials->path(), ">)")
                         : std::string()));
    in6_addr literal;
    if (ParseAddress(origin.host, literal)) {
      // An address is checked: the proxy would connect to it as it is.
      return finish((*policy)->CheckAddress(origin.host, &lines));
    }
    lines.push_back(absl::StrCat(
        "addresses: not checked by egress: the proxy resolves ", origin.host,
        " and connects; --allow_cidrs/--deny_cidrs and the private-range "
        "rules apply to direct connections and to addresses given as the "
        "host only (docs/security.md)"));
    return finish(absl::OkStatus());
  }

  // The addresses the session would connect to, each checked.
  in6_addr literal;
  std::vector<std::string> addresses;
  if (ParseAddress(origin.host, literal)) {
    addresses.push_back(origin.host);
  } else {
    absl::StatusOr<std::vector<std::string>> resolved =
        resolver.Resolve(origin.host);
    if (!resolved.ok()) {
      lines.push_back(absl::StrCat("dns: ", resolved.status().message()));
      return finish(resolved.status());
    }
    lines.push_back(absl::StrCat("dns: ", origin.host, " is ",
                                 absl::StrJoin(*resolved, ", ")));
    addresses = *std::move(resolved);
  }
  absl::Status last;
  bool any = false;
  for (const std::string& address : addresses) {
    absl::Status checked = (*policy)->CheckAddress(address, &lines);
    any = any || checked.ok();
    if (!checked.ok()) last = checked;
  }
  // A session skips refused addresses and connects to the allowed ones.
  return finish(any ? absl::OkStatus() : last);
}

}  // namespace egress
