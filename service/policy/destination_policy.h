// DestinationPolicy: which upstreams the service may reach. An egress service
// is an SSRF amplifier by nature; this unit is what keeps callers away from the
// cluster's internal services and the cloud metadata endpoint.
//
// Two checks, both before any byte is sent:
//   CheckDestination  the URL's host against --deny_hosts / --allow_hosts
//                 (exact names and "*.example.com" suffix patterns), then the
//                 caller's own hosts, then the port against --allow_ports (or
//                 the caller's own ports), before the call is queued;
//   CheckAddress  the address the session will connect to (the DNS cache pins
//                 it, so the checked address is the connected one) against
//                 --deny_cidrs, --allow_cidrs and the built-in refusal of
//                 non-public ranges: loopback, private (RFC 1918), link-local
//                 (169.254.169.254 included), CGNAT, unspecified, multicast,
//                 broadcast, reserved and documentation ranges, IPv6 ULA,
//                 link-local and loopback, and IPv6 forms that embed an IPv4
//                 address (mapped, NAT64, 6to4, Teredo, compatible) whose
//                 embedded address is refused.
// Deny wins over allow for the same address. Refusals are PERMISSION_DENIED,
// naming the address and the rule, with the rule's label as a payload
// (PolicyRuleOf) for egress_policy_denied_total{reason}.
//
// Both checks can explain themselves (`explain`, one line per rule
// consulted), which `egressd --policy_check` prints for operators.
//
// Usage:
//   auto policy = DestinationPolicy::Create(options);
//   absl::Status ok = policy->CheckAddress("10.0.0.1");
//
// Thread safety: immutable after Create; safe to share.
#pragma once

#include <netinet/in.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/base/defaults.h"

namespace egress {

// The rule that refused a destination: the `reason` label of
// egress_policy_denied_total.
enum class PolicyRule {
  kLoopback,
  kPrivate,
  kLinkLocal,
  kCgnat,
  kUnspecified,
  kMulticast,
  kBroadcast,
  kReserved,
  kUniqueLocal,
  kDenyCidrs,
  kDenyHosts,
  kAllowHosts,
  kIdentity,  // not among the hosts of the caller's identity
  kInvalid,   // not a numeric address
  kPort,      // not in --allow_ports or the caller's own ports
};
inline constexpr int kPolicyRuleCount = 15;
// "loopback", "private", ..., as in the enum.
const char* PolicyRuleName(PolicyRule rule);

// An address range; IPv4 ranges are kept as IPv4-mapped IPv6 (::ffff:0:0/96).
struct Cidr {
  in6_addr network{};
  int prefix = 0;  // 0..128

  bool Contains(const in6_addr& address) const;
};

// Parses "10.0.0.0/8,::1/128, 192.168.1.7" (a bare address is a /32 or /128).
// INVALID_ARGUMENT names `flag` and the bad entry.
absl::StatusOr<std::vector<Cidr>> ParseCidrList(absl::string_view list,
                                                absl::string_view flag);

// Parses a numeric IPv4 or IPv6 address (no brackets) into the 16-byte form.
bool ParseAddress(const std::string& text, in6_addr& out);

// The built-in rule that refuses a non-public address (kLoopback, kPrivate,
// kLinkLocal, kCgnat, kUnspecified, kMulticast, kBroadcast, kReserved,
// kUniqueLocal), or nullopt for a public one. IPv6 forms that embed IPv4 are
// classified by their embedded address.
std::optional<PolicyRule> ClassifyAddress(const in6_addr& address);

// A set of TCP ports: a list, or every port ("*").
class PortSet {
 public:
  // "80,443" or "*" (alone). INVALID_ARGUMENT, without a prefix, for anything
  // else: an empty list, a port outside 1-65535, "*" among numbers.
  static absl::StatusOr<PortSet> Parse(absl::string_view list);

  bool Contains(int port) const;
  // "80,443" (sorted) or "*".
  std::string ToString() const;

 private:
  bool any_ = false;
  std::vector<int> ports_;  // sorted, unique
};

// A host pattern as written in --allow_hosts, --deny_hosts or an identity's
// hosts, normalized (lower case, no trailing dot): "api.example.com", an IP
// address, "*.example.com" (a proper subdomain; the "*" a whole label), or
// "*" alone (every host). INVALID_ARGUMENT, without a prefix, naming what is
// wrong: "*example.com", "a*.example.com", a port, a URL, an empty label.
absl::StatusOr<std::string> ParseHostPattern(absl::string_view text);

// What one caller identity may reach, on top of the service-wide host rules.
struct CallerRules {
  std::vector<std::string> hosts;  // normalized patterns; {"*"}: any host
  // When set, replaces --allow_ports for this caller.
  std::optional<PortSet> ports;
  // When set, replaces --max_inflight_per_caller for this caller (0: none).
  std::optional<size_t> max_inflight;
  std::string source;  // where the rules were written: "file:line"
};

struct PolicyOptions {
  std::vector<Cidr> allow_cidrs;
  std::vector<Cidr> deny_cidrs;
  std::vector<std::string> allow_hosts;  // empty: any host
  std::vector<std::string> deny_hosts;
  PortSet allow_ports = *PortSet::Parse(defaults::kAllowPorts);
};

class DestinationPolicy {
 public:
  // Normalizes the host patterns (ParseHostPattern); refuses malformed ones,
  // naming the flag.
  static absl::StatusOr<std::unique_ptr<DestinationPolicy>> Create(
      PolicyOptions options);

  // The URL's host (normalized) and port against the host lists and the
  // ports. `caller`, when not null, holds the caller's own rules (per
  // identity): its hosts are checked as well, its ports replace
  // --allow_ports. `explain`, when not null, gets a line per rule consulted.
  absl::Status CheckDestination(
      const std::string& host, int port, const CallerRules* caller,
      std::vector<std::string>* explain = nullptr) const;

  // The numeric address about to be connected to.
  absl::Status CheckAddress(const std::string& address,
                            std::vector<std::string>* explain = nullptr) const;

  // From now on, checks with `next`'s lists (a reload); a check in progress
  // finishes with the lists it began with.
  void Replace(const DestinationPolicy& next);

 private:
  explicit DestinationPolicy(PolicyOptions options)
      : options_(std::make_shared<const PolicyOptions>(std::move(options))) {}
  std::shared_ptr<const PolicyOptions> current() const {
    return std::atomic_load(&options_);
  }
  // The rule refusing `address`, or nullptr.
  static std::optional<PolicyRule> Refusal(const PolicyOptions& options,
                                           const in6_addr& address);

  std::shared_ptr<const PolicyOptions> options_;  // swapped by Replace
};

// True when `host` matches `pattern`: equal, pattern "*", or pattern
// "*.example.com" and host a subdomain of example.com (not example.com
// itself). Both lower-case.
bool HostMatches(absl::string_view host, absl::string_view pattern);

// The rule a policy refusal carries, or nullopt when `status` has none.
std::optional<PolicyRule> PolicyRuleOf(const absl::Status& status);

}  // namespace egress
