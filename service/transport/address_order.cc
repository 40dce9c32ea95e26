#include "service/transport/address_order.h"

#include <algorithm>
#include <utility>

namespace egress {
namespace {

bool IsIpv6(const std::string& address) {
  return address.find(':') != std::string::npos;
}

std::vector<std::string> HappyEyeballsOrder(
    const std::vector<std::string>& addresses) {
  std::vector<std::string> first_family;
  std::vector<std::string> other_family;
  for (const std::string& a : addresses) {
    (IsIpv6(a) == IsIpv6(addresses.front()) ? first_family : other_family)
        .push_back(a);
  }
  std::vector<std::string> ordered;
  ordered.reserve(addresses.size());
  for (size_t i = 0; i < std::max(first_family.size(), other_family.size());
       ++i) {
    if (i < first_family.size()) ordered.push_back(first_family[i]);
    if (i < other_family.size()) ordered.push_back(other_family[i]);
  }
  return ordered;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ConnectOrder(
    const std::vector<std::string>& resolved, const DestinationPolicy* policy,
    const std::string& working) {
  std::vector<std::string> allowed;
  absl::Status refusal;
  for (const std::string& address : resolved) {
    absl::Status checked =
        policy != nullptr ? policy->CheckAddress(address) : absl::OkStatus();
    if (checked.ok()) {
      allowed.push_back(address);
    } else if (refusal.ok()) {
      refusal = std::move(checked);
    }
  }
  if (allowed.empty()) {
    if (refusal.ok()) return absl::UnavailableError("no address to connect to");
    return refusal;
  }
  std::vector<std::string> ordered = HappyEyeballsOrder(allowed);
  auto found = std::find(ordered.begin(), ordered.end(), working);
  if (found != ordered.end()) std::rotate(ordered.begin(), found, found + 1);
  return ordered;
}

}  // namespace egress
