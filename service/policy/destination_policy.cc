#include "service/policy/destination_policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/base/error_details.h"

namespace egress {
namespace {

constexpr char kReasonPayload[] = "egress.policy/reason";

in6_addr Mapped(uint32_t v4_host_order) {
  in6_addr a{};
  a.s6_addr[10] = 0xff;
  a.s6_addr[11] = 0xff;
  a.s6_addr[12] = static_cast<uint8_t>(v4_host_order >> 24);
  a.s6_addr[13] = static_cast<uint8_t>(v4_host_order >> 16);
  a.s6_addr[14] = static_cast<uint8_t>(v4_host_order >> 8);
  a.s6_addr[15] = static_cast<uint8_t>(v4_host_order);
  return a;
}

uint32_t Word(const in6_addr& a, int byte) {
  return (uint32_t{a.s6_addr[byte]} << 24) |
         (uint32_t{a.s6_addr[byte + 1]} << 16) |
         (uint32_t{a.s6_addr[byte + 2]} << 8) | a.s6_addr[byte + 3];
}

Cidr V4(uint32_t network, int prefix) {
  return Cidr{Mapped(network), 96 + prefix};
}

Cidr V6(const char* text, int prefix) {
  Cidr c;
  inet_pton(AF_INET6, text, &c.network);
  c.prefix = prefix;
  return c;
}

struct Range {
  Cidr cidr;
  PolicyRule rule;
};

// IPv4 ranges that are not public (IANA special-purpose registry).
const std::vector<Range>& V4Ranges() {
  static const auto* ranges = new std::vector<Range>{
      {V4(0x00000000, 8),
       PolicyRule::kUnspecified},                  // 0.0.0.0/8 "this network"
      {V4(0x0A000000, 8), PolicyRule::kPrivate},   // 10.0.0.0/8
      {V4(0x64400000, 10), PolicyRule::kCgnat},    // 100.64.0.0/10
      {V4(0x7F000000, 8), PolicyRule::kLoopback},  // 127.0.0.0/8
      {V4(0xA9FE0000, 16),
       PolicyRule::kLinkLocal},  // 169.254.0.0/16 (cloud metadata)
      {V4(0xAC100000, 12), PolicyRule::kPrivate},  // 172.16.0.0/12
      {V4(0xC0000000, 24),
       PolicyRule::kReserved},  // 192.0.0.0/24 IETF assignments
      {V4(0xC0000200, 24), PolicyRule::kReserved},  // 192.0.2.0/24 TEST-NET-1
      {V4(0xC0586300, 24), PolicyRule::kReserved},  // 192.88.99.0/24 6to4 relay
      {V4(0xC0A80000, 16), PolicyRule::kPrivate},   // 192.168.0.0/16
      {V4(0xC6120000, 15),
       PolicyRule::kReserved},  // 198.18.0.0/15 benchmarking
      {V4(0xC6336400, 24),
       PolicyRule::kReserved},  // 198.51.100.0/24 TEST-NET-2
      {V4(0xCB007100, 24), PolicyRule::kReserved},  // 203.0.113.0/24 TEST-NET-3
      {V4(0xE0000000, 4), PolicyRule::kMulticast},  // 224.0.0.0/4
      {V4(0xFFFFFFFF, 32), PolicyRule::kBroadcast},  // 255.255.255.255
      {V4(0xF0000000, 4), PolicyRule::kReserved},    // 240.0.0.0/4
  };
  return *ranges;
}

// IPv6 ranges that are not public and embed no IPv4 address.
const std::vector<Range>& V6Ranges() {
  static const auto* ranges = new std::vector<Range>{
      {V6("::", 128), PolicyRule::kUnspecified},
      {V6("::1", 128), PolicyRule::kLoopback},
      {V6("100::", 64), PolicyRule::kReserved},        // discard-only
      {V6("64:ff9b:1::", 48), PolicyRule::kReserved},  // local-use NAT64
      {V6("2001:db8::", 32), PolicyRule::kReserved},   // documentation
      {V6("2001:10::", 28), PolicyRule::kReserved},    // ORCHID
      {V6("fc00::", 7), PolicyRule::kUniqueLocal},
      {V6("fe80::", 10), PolicyRule::kLinkLocal},
      {V6("fec0::", 10), PolicyRule::kReserved},  // site-local, deprecated
      {V6("ff00::", 8), PolicyRule::kMulticast},
  };
  return *ranges;
}

std::optional<PolicyRule> ClassifyV4(uint32_t v4) {
  const in6_addr mapped = Mapped(v4);
  for (const Range& r : V4Ranges()) {
    if (r.cidr.Contains(mapped)) return r.rule;
  }
  return std::nullopt;
}

// IPv4 addresses an IPv6 address carries, which a packet to it may reach.
std::vector<uint32_t> EmbeddedV4(const in6_addr& a) {
  static const Cidr kMapped = V6("::ffff:0:0", 96);
  static const Cidr kCompatible = V6("::", 96);
  static const Cidr kNat64 = V6("64:ff9b::", 96);
  static const Cidr k6to4 = V6("2002::", 16);
  static const Cidr kTeredo = V6("2001::", 32);
  if (kMapped.Contains(a) || kNat64.Contains(a)) return {Word(a, 12)};
  // ::/96 minus :: and ::1, which the v6 table classifies.
  if (kCompatible.Contains(a) && Word(a, 12) > 1) return {Word(a, 12)};
  if (k6to4.Contains(a)) return {Word(a, 2)};
  // Teredo: server in bits 32-63, client (obfuscated) in bits 96-127.
  if (kTeredo.Contains(a)) return {Word(a, 4), ~Word(a, 12)};
  return {};
}

bool IsMapped(const in6_addr& a) {
  static const Cidr kMapped = V6("::ffff:0:0", 96);
  return kMapped.Contains(a);
}

absl::Status Denied(const std::string& what, PolicyRule rule,
                    absl::string_view why) {
  absl::Status status = absl::PermissionDeniedError(
      absl::StrCat(what, " refused by policy: ", why));
  status.SetPayload(kReasonPayload, absl::Cord(PolicyRuleName(rule)));
  return WithReason(std::move(status), ErrorReason::kDestinationDenied,
                    {{"rule", PolicyRuleName(rule)}, {"refused", what}});
}

std::string Describe(PolicyRule rule) {
  switch (rule) {
    case PolicyRule::kPrivate:
      return "private address (RFC 1918)";
    case PolicyRule::kLinkLocal:
      return "link-local address (cloud metadata lives here)";
    case PolicyRule::kCgnat:
      return "shared address space (CGNAT, 100.64.0.0/10)";
    case PolicyRule::kUniqueLocal:
      return "IPv6 unique local address (fc00::/7)";
    case PolicyRule::kDenyCidrs:
      return "--deny_cidrs address";
    default:
      return absl::StrCat(PolicyRuleName(rule), " address");
  }
}

std::string AddressText(const in6_addr& a) {
  char text[INET6_ADDRSTRLEN] = {};
  if (IsMapped(a)) {
    in_addr v4;
    std::memcpy(&v4, &a.s6_addr[12], 4);
    inet_ntop(AF_INET, &v4, text, sizeof(text));
  } else {
    inet_ntop(AF_INET6, &a, text, sizeof(text));
  }
  return text;
}

}  // namespace

bool Cidr::Contains(const in6_addr& address) const {
  int bits = prefix;
  for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    const uint8_t mask =
        bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((address.s6_addr[i] & mask) != (network.s6_addr[i] & mask))
      return false;
  }
  return true;
}

bool ParseAddress(const std::string& text, in6_addr& out) {
  // inet_pton reads up to a NUL: "::\0anything" must not pass as "::".
  if (text.find('\0') != std::string::npos) return false;
  in_addr v4;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    out = Mapped(ntohl(v4.s_addr));
    return true;
  }
  return inet_pton(AF_INET6, text.c_str(), &out) == 1;
}

absl::StatusOr<std::vector<Cidr>> ParseCidrList(absl::string_view list,
                                                absl::string_view flag) {
  std::vector<Cidr> out;
  for (absl::string_view item :
       absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    const size_t slash = item.find('/');
    const std::string address(item.substr(0, slash));
    Cidr cidr;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": \"", item, "\" ", why));
    };
    if (!ParseAddress(address, cidr.network))
      return bad("is not an IP address or CIDR");
    const bool v4 = address.find(':') == std::string::npos;
    int prefix = v4 ? 32 : 128;
    if (slash != absl::string_view::npos &&
        (!absl::SimpleAtoi(item.substr(slash + 1), &prefix) || prefix < 0 ||
         prefix > (v4 ? 32 : 128))) {
      return bad(v4 ? "has a prefix length outside 0-32"
                    : "has a prefix length outside 0-128");
    }
    cidr.prefix = v4 ? 96 + prefix : prefix;
    out.push_back(cidr);
  }
  return out;
}

std::optional<PolicyRule> ClassifyAddress(const in6_addr& address) {
  if (IsMapped(address)) return ClassifyV4(Word(address, 12));
  for (const Range& r : V6Ranges()) {
    if (r.cidr.Contains(address)) return r.rule;
  }
  for (uint32_t v4 : EmbeddedV4(address)) {
    if (std::optional<PolicyRule> rule = ClassifyV4(v4)) return rule;
  }
  return std::nullopt;
}

const char* PolicyRuleName(PolicyRule rule) {
  // clang-format off
  switch (rule) {
    case PolicyRule::kLoopback:    return "loopback";
    case PolicyRule::kPrivate:     return "private";
    case PolicyRule::kLinkLocal:   return "link_local";
    case PolicyRule::kCgnat:       return "cgnat";
    case PolicyRule::kUnspecified: return "unspecified";
    case PolicyRule::kMulticast:   return "multicast";
    case PolicyRule::kBroadcast:   return "broadcast";
    case PolicyRule::kReserved:    return "reserved";
    case PolicyRule::kUniqueLocal: return "unique_local";
    case PolicyRule::kDenyCidrs:   return "deny_cidrs";
    case PolicyRule::kDenyHosts:   return "deny_hosts";
    case PolicyRule::kAllowHosts:  return "allow_hosts";
    case PolicyRule::kIdentity:    return "identity";
    case PolicyRule::kInvalid:     return "invalid";
    case PolicyRule::kPort:        return "port";
  }
  // clang-format on
  return "invalid";
}

std::optional<PolicyRule> PolicyRuleOf(const absl::Status& status) {
  absl::optional<absl::Cord> name = status.GetPayload(kReasonPayload);
  if (!name) return std::nullopt;
  for (int i = 0; i < kPolicyRuleCount; ++i) {
    const auto rule = static_cast<PolicyRule>(i);
    if (*name == PolicyRuleName(rule)) return rule;
  }
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<DestinationPolicy>> DestinationPolicy::Create(
    PolicyOptions options) {
  for (auto* list : {&options.allow_hosts, &options.deny_hosts}) {
    for (std::string& pattern : *list) {
      absl::StatusOr<std::string> parsed = ParseHostPattern(pattern);
      if (!parsed.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            list == &options.allow_hosts ? "--allow_hosts" : "--deny_hosts",
            ": ", parsed.status().message()));
      }
      pattern = *std::move(parsed);
    }
  }
  return std::unique_ptr<DestinationPolicy>(
      new DestinationPolicy(std::move(options)));
}

namespace {

// The first pattern of `list` that `host` matches, or nullptr.
const std::string* FirstMatch(const std::string& host,
                              const std::vector<std::string>& list) {
  for (const std::string& pattern : list) {
    if (HostMatches(host, pattern)) return &pattern;
  }
  return nullptr;
}

// Appends a line to `explain` (--policy_check); a call's own check passes
// nullptr and builds no text.
template <typename... Parts>
void Explain(std::vector<std::string>* explain, const Parts&... parts) {
  if (explain != nullptr) explain->push_back(absl::StrCat(parts...));
}

}  // namespace

absl::Status DestinationPolicy::CheckDestination(
    const std::string& host, int port, const CallerRules* caller,
    std::vector<std::string>* explain) const {
  const std::shared_ptr<const PolicyOptions> held = current();
  const PolicyOptions& options = *held;
  if (const std::string* hit = FirstMatch(host, options.deny_hosts)) {
    Explain(explain, "--deny_hosts: \"", *hit, "\" matches: REFUSED");
    return Denied(absl::StrCat("host ", host), PolicyRule::kDenyHosts,
                  absl::StrCat("matches --deny_hosts entry ", *hit));
  }
  Explain(explain, options.deny_hosts.empty()
                       ? "--deny_hosts: empty"
                       : "--deny_hosts: no entry matches");
  if (options.allow_hosts.empty()) {
    Explain(explain, "--allow_hosts: empty, every host allowed");
  } else if (const std::string* hit = FirstMatch(host, options.allow_hosts)) {
    Explain(explain, "--allow_hosts: \"", *hit, "\" matches");
  } else {
    Explain(explain, "--allow_hosts: no entry matches: REFUSED");
    return Denied(absl::StrCat("host ", host), PolicyRule::kAllowHosts,
                  "not in --allow_hosts");
  }
  if (caller == nullptr) {
    Explain(explain, "caller's own hosts: none configured");
  } else if (const std::string* hit = FirstMatch(host, caller->hosts)) {
    Explain(explain, "caller's hosts (", caller->source, "): \"", *hit,
            "\" matches");
  } else {
    if (explain != nullptr) {
      Explain(explain, "caller's hosts (", caller->source,
              "): ", absl::StrJoin(caller->hosts, ","),
              ": no entry matches: REFUSED");
    }
    return Denied(absl::StrCat("host ", host), PolicyRule::kIdentity,
                  "not among the hosts this caller may reach");
  }
  const bool own_ports = caller != nullptr && caller->ports.has_value();
  const PortSet& ports = own_ports ? *caller->ports : options.allow_ports;
  if (ports.Contains(port) && explain == nullptr) return absl::OkStatus();
  // Refused, or explained: name the list.
  const std::string list = absl::StrCat(
      own_ports ? absl::StrCat("the caller's ports (", caller->source, ")")
                : "--allow_ports",
      " (", ports.ToString(), ")");
  if (!ports.Contains(port)) {
    Explain(explain, "port ", port, ": not in ", list, ": REFUSED");
    return Denied(absl::StrCat("port ", port), PolicyRule::kPort,
                  absl::StrCat("not in ", list));
  }
  Explain(explain, "port ", port, ": in ", list);
  return absl::OkStatus();
}

std::optional<PolicyRule> DestinationPolicy::Refusal(
    const PolicyOptions& options, const in6_addr& address) {
  for (const Cidr& c : options.deny_cidrs) {
    if (c.Contains(address)) return PolicyRule::kDenyCidrs;
  }
  for (const Cidr& c : options.allow_cidrs) {
    if (c.Contains(address)) return std::nullopt;
  }
  return ClassifyAddress(address);
}

absl::Status DestinationPolicy::CheckAddress(
    const std::string& address, std::vector<std::string>* explain) const {
  const std::shared_ptr<const PolicyOptions> held = current();
  const PolicyOptions& options = *held;
  in6_addr a;
  if (!ParseAddress(address, a)) {
    Explain(explain, "address ", address, ": not a numeric address: REFUSED");
    return Denied(absl::StrCat("address ", address), PolicyRule::kInvalid,
                  "not a numeric address");
  }
  std::optional<PolicyRule> rule = Refusal(options, a);
  // An IPv6 form that carries an IPv4 address is refused when that one is.
  if (!rule && !IsMapped(a)) {
    for (uint32_t v4 : EmbeddedV4(a)) {
      if ((rule = Refusal(options, Mapped(v4)))) {
        const std::string why = absl::StrCat("embeds ", AddressText(Mapped(v4)),
                                             ", a ", Describe(*rule));
        Explain(explain, "address ", AddressText(a), ": ", why, ": REFUSED");
        return Denied(absl::StrCat("connect to ", AddressText(a)), *rule, why);
      }
    }
  }
  if (!rule) {
    if (explain != nullptr) {
      const bool listed =
          std::any_of(options.allow_cidrs.begin(), options.allow_cidrs.end(),
                      [&](const Cidr& c) { return c.Contains(a); });
      Explain(explain, "address ", AddressText(a), ": ",
              listed ? "in --allow_cidrs" : "public");
    }
    return absl::OkStatus();
  }
  const std::string why = *rule == PolicyRule::kDenyCidrs
                              ? std::string("in --deny_cidrs")
                              : Describe(*rule);
  Explain(explain, "address ", AddressText(a), ": ", why, ": REFUSED");
  return Denied(absl::StrCat("connect to ", AddressText(a)), *rule, why);
}

void DestinationPolicy::Replace(const DestinationPolicy& next) {
  std::atomic_store(&options_, next.current());
}

}  // namespace egress
