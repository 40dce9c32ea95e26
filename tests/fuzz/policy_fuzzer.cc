// libFuzzer target: the policy files' parsers on arbitrary input. Built and
// run by scripts/fuzz.sh (clang); its seeds (tests/fuzz/policy_corpus) replay
// in every `bazel test`. The input is parsed whole as an identity file
// (--identity_hosts_file), and each of its lines as a host pattern, a port
// list (--allow_ports) and a CIDR list (--allow_cidrs).
// Whatever the input, nothing may crash, leak or trip a sanitizer, and what
// is accepted must mean exactly one thing:
//   - a normalized host pattern parses to itself, is lower-case, and has a
//     "*" only as "*" alone or as the whole first label;
//   - "*.suffix" never matches the suffix itself or a name merely ending in it;
//   - a port list prints back to the same set;
//   - every accepted identity is valid and its rules re-parse to themselves.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "service/policy/destination_policy.h"
#include "service/policy/policy_files.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

void CheckPattern(const std::string& pattern) {
  absl::StatusOr<std::string> again = egress::ParseHostPattern(pattern);
  Require(again.ok() && *again == pattern);
  Require(absl::AsciiStrToLower(pattern) == pattern);
  const size_t star = pattern.find('*');
  if (star != std::string::npos) {
    Require(pattern == "*" || (star == 0 && absl::StartsWith(pattern, "*.") &&
                               pattern.find('*', 1) == std::string::npos));
  }
  if (absl::StartsWith(pattern, "*.")) {
    const std::string suffix = pattern.substr(2);
    Require(!egress::HostMatches(suffix, pattern));
    Require(!egress::HostMatches("evil" + suffix, pattern));
    Require(egress::HostMatches("a." + suffix, pattern));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<egress::IdentityRuleMap> rules =
      egress::ParseIdentityFile(input, "fuzz.txt");
  if (rules.ok()) {
    for (const auto& [identity, r] : *rules) {
      Require(egress::ValidateIdentity(identity).ok());
      Require(!r->hosts.empty());
      for (const std::string& host : r->hosts) CheckPattern(host);
      if (r->ports) {
        absl::StatusOr<egress::PortSet> again =
            egress::PortSet::Parse(r->ports->ToString());
        Require(again.ok() && again->ToString() == r->ports->ToString());
      }
      absl::StatusOr<std::shared_ptr<const egress::CallerRules>> rebuilt =
          egress::MakeCallerRules(
              absl::StrJoin(r->hosts, ","),
              r->ports ? r->ports->ToString() : "", r->source,
              r->max_inflight ? std::optional<uint32_t>(
                                    static_cast<uint32_t>(*r->max_inflight))
                              : std::nullopt);
      Require(rebuilt.ok() && (*rebuilt)->hosts == r->hosts &&
              (*rebuilt)->max_inflight == r->max_inflight);
    }
  } else {
    Require(rules.status().code() == absl::StatusCode::kInvalidArgument);
    Require(absl::StartsWith(rules.status().message(), "fuzz.txt:"));
  }

  for (absl::string_view line : absl::StrSplit(input, '\n')) {
    absl::StatusOr<std::string> pattern = egress::ParseHostPattern(line);
    if (pattern.ok()) CheckPattern(*pattern);
    absl::StatusOr<egress::PortSet> ports = egress::PortSet::Parse(line);
    if (ports.ok()) {
      absl::StatusOr<egress::PortSet> again =
          egress::PortSet::Parse(ports->ToString());
      Require(again.ok() && again->ToString() == ports->ToString());
      Require(ports->ToString() == "*" ||
              (!ports->Contains(0) && !ports->Contains(65536)));
    }
    (void)egress::ParseCidrList(line, "allow_cidrs");
  }
  return 0;
}
