// libFuzzer target: URL parsing, request validation and policy decisions on
// arbitrary input. Built and run by scripts/fuzz.sh (clang, not part of bazel
// test). The input is split into lines:
//   line 1          the method
//   line 2          the URL
//   further lines   "name: value" headers (or a name alone)
// Whatever the input, nothing may crash, leak or trip a sanitizer, and an
// accepted request must be safe to put on the wire.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/str_split.h"
#include "proto/egress/v1/egress.pb.h"
#include "service/admission/request_validation.h"
#include "service/policy/destination_policy.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

bool HasControl(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

const egress::DestinationPolicy& Policy() {
  static const egress::DestinationPolicy* policy = [] {
    egress::PolicyOptions options;
    options.allow_cidrs = *egress::ParseCidrList("127.0.0.0/8", "allow_cidrs");
    options.deny_cidrs = *egress::ParseCidrList("127.0.0.2/32", "deny_cidrs");
    options.deny_hosts = {"*.internal.test"};
    return egress::DestinationPolicy::Create(options)->release();
  }();
  return *policy;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines = absl::StrSplit(input, '\n');
  egress::v1::DoRequest request;
  if (!lines.empty()) request.set_method(lines[0]);
  if (lines.size() > 1) request.set_url(lines[1]);
  for (size_t i = 2; i < lines.size(); ++i) {
    egress::v1::Header* header = request.add_headers();
    const size_t colon = lines[i].find(':');
    header->set_name(lines[i].substr(0, colon));
    if (colon != std::string::npos)
      header->set_value(lines[i].substr(colon + 1));
  }

  egress::ValidationLimits limits;
  limits.max_request_bytes = 1024;
  absl::StatusOr<egress::UpstreamRequest> result =
      egress::ValidateRequest(request, limits);
  if (!result.ok()) {
    Require(!result.status().message().empty());
    return 0;
  }
  // Accepted: nothing that could split or smuggle a request.
  Require(egress::IsHttpToken(result->method));
  Require(!result->target.empty() && result->target[0] == '/');
  Require(!HasControl(result->target) &&
          result->target.find(' ') == std::string::npos);
  Require(result->origin.port != 0);
  Require(!result->origin.host.empty() && !HasControl(result->origin.host));
  Require(result->origin.scheme == "http" || result->origin.scheme == "https");
  for (const auto& [name, value] : result->headers) {
    Require(egress::IsHttpToken(name));
    Require(value.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
    Require(!egress::IsServiceOwnedHeader(name));
  }

  // Policy decisions on whatever host came out, and on the input as an address.
  absl::Status host = Policy().CheckDestination(result->origin.host,
                                                result->origin.port, nullptr);
  Require(host.ok() || absl::IsPermissionDenied(host));
  in6_addr address;
  if (egress::ParseAddress(result->origin.host, address)) {
    absl::Status checked = Policy().CheckAddress(result->origin.host);
    Require(checked.ok() || absl::IsPermissionDenied(checked));
    Require(checked.ok() || egress::PolicyRuleOf(checked).has_value());
  }
  if (lines.size() > 2) (void)Policy().CheckAddress(lines[2]);
  (void)egress::ParseCidrList(lines[0], "fuzz");
  return 0;
}
