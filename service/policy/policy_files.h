// Policy files: the identity file (--identity_hosts_file) and the lines shared
// with the tokens file, parsed so that nothing in them can be misread.
//
// Both files have one entry per line, fields separated by spaces or tabs, '#'
// starting a comment. The identity file's lines are
//
//   IDENTITY HOSTS [ports=PORTS] [max_inflight=N]
//
//   billing  api.stripe.com,*.stripe.com
//   spiffe://cluster.local/ns/shop/sa/cart  api.example.com  ports=443,8443
//   ops      *  ports=443  max_inflight=20
//
// IDENTITY is a name (letters, digits, ".", "_", "-", "@", ":") or a SPIFFE ID
// (spiffe://trust-domain/path); HOSTS is a comma-separated list of patterns
// checked by ParseHostPattern ("*" alone: every host); PORTS (optional)
// replaces --allow_ports for that caller, N (optional) its
// --max_inflight_per_caller (0: no limit). Each option at most once. An
// identity has at most one line.
// Anything else is an error naming the file and the line.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/policy/destination_policy.h"

namespace egress {

// What the config file's identity_hosts gives one identity.
struct IdentityEntry {
  std::vector<std::string> hosts;
  std::string ports;                     // empty: --allow_ports
  std::optional<uint32_t> max_inflight;  // unset: --max_inflight_per_caller
};

// identity -> its rules.
using IdentityRuleMap =
    std::map<std::string, std::shared_ptr<const CallerRules>>;

// The whole file that --FLAG names (also the TLS files and --config);
// INVALID_ARGUMENT "--FLAG: cannot read PATH".
absl::StatusOr<std::string> ReadFlagFile(const std::string& path,
                                         absl::string_view flag);

// Calls `entry(fields)` for each line of `text` that is not empty or a
// comment; an error it returns comes back as "SOURCE:LINE: message".
absl::Status ForEachEntry(
    absl::string_view text, absl::string_view source,
    const std::function<absl::Status(const std::vector<absl::string_view>&,
                                     int line)>& entry);

// OK for a caller identity as the files may name it: a SPIFFE ID
// (spiffe://trust-domain/path, RFC-style: lower-case trust domain, path
// segments of letters, digits, ".", "_", "-", none "." or "..") or a plain
// name of letters, digits and ".", "_", "-", "@", ":". INVALID_ARGUMENT
// naming what is wrong otherwise.
absl::Status ValidateIdentity(absl::string_view identity);

// One identity's rules from its hosts ("a.com,*.b.com"), ports ("" for
// --allow_ports) and calls in flight, validated; `source` is where they were
// written.
absl::StatusOr<std::shared_ptr<const CallerRules>> MakeCallerRules(
    absl::string_view hosts, absl::string_view ports, std::string source,
    std::optional<uint32_t> max_inflight = std::nullopt);

// Parses the identity file's text; `source` (the path) names it in errors.
absl::StatusOr<IdentityRuleMap> ParseIdentityFile(absl::string_view text,
                                                  absl::string_view source);

}  // namespace egress
