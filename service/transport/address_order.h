// ConnectOrder: which of a host's resolved addresses a session may connect
// to, and in which order it tries them.
//
// Every address is checked against the destination policy; refused ones are
// dropped (never tried). The rest are ordered as Happy Eyeballs does
// (RFC 8305, section 4: the first address's family first, then the families
// alternating, each in the resolver's order), except that the address that
// worked last time stays first.
//
// Thread safety: pure function.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service/policy/destination_policy.h"

namespace egress {

// The addresses of `resolved` that `policy` allows (all when it is nullptr),
// in the order to try them, `working` first when it is among them. When the
// policy refuses every address: its first refusal.
absl::StatusOr<std::vector<std::string>> ConnectOrder(
    const std::vector<std::string>& resolved, const DestinationPolicy* policy,
    const std::string& working);

}  // namespace egress
