#include "service/http_types.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace egress {
namespace {

uint16_t DefaultPort(const std::string& scheme) {
  return scheme == "https" ? 443 : 80;
}

std::string BracketedHost(const std::string& host) {
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]")
                                             : host;
}

}  // namespace

std::string Origin::Key() const {
  return absl::StrCat(scheme, "://", BracketedHost(host), ":", port);
}

std::string Origin::HostHeader() const {
  if (port == DefaultPort(scheme)) return BracketedHost(host);
  return absl::StrCat(BracketedHost(host), ":", port);
}

bool IsIdempotentMethod(const std::string& method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" ||
         method == "PUT" || method == "DELETE" || method == "TRACE";
}

bool IsServiceOwnedHeader(const std::string& name) {
  static constexpr const char* kOwned[] = {
      "connection", "keep-alive",        "te",   "trailer",
      "upgrade",    "transfer-encoding", "host",
  };
  for (const char* owned : kOwned) {
    if (absl::EqualsIgnoreCase(name, owned)) return true;
  }
  return absl::StartsWithIgnoreCase(name, "proxy-");
}

}  // namespace egress
