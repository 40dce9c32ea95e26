// PolicyCheck: what the destination policy decides for one caller and one
// URL, explained rule by rule, for operators (`egressd --policy_check=URL
// --policy_check_caller=IDENTITY`), the way Smokescreen's report mode
// explains its decisions. It runs the same checks, in the same order, as a
// call does: the URL, the caller's rules, the host lists and the port
// (Admission), then every address the name resolves to (the sessions).
//
// Also home of PolicyFromConfig, the one place the service's
// DestinationPolicy is built from a Config.
//
// Thread safety: pure functions (ExplainPolicy calls `resolver`).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "service/policy/destination_policy.h"
#include "service/server/config.h"
#include "service/transport/dns_cache.h"

namespace egress {

// The policy the flags and the config file describe; INVALID_ARGUMENT naming
// the flag for a malformed list.
absl::StatusOr<std::unique_ptr<DestinationPolicy>> PolicyFromConfig(
    const Config& config);

struct PolicyReport {
  bool allowed = false;
  std::string text;  // one line per rule consulted, then the verdict
};

// The decision for a call from `caller` (an identity, "anonymous" for none)
// to `url`. Errors: the configuration or the policy files are invalid.
// A malformed URL or a name that does not resolve is a refusal, explained.
absl::StatusOr<PolicyReport> ExplainPolicy(const Config& config,
                                           const std::string& caller,
                                           const std::string& url,
                                           Resolver& resolver);

}  // namespace egress
