#include "service/base/http_types.h"

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

bool IsValidUtf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* const end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    // The allowed range of the second byte depends on the first (RFC 3629,
    // section 4); later continuation bytes are always 0x80-0xBF.
    int length;
    unsigned char low = 0x80, high = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      if (c == 0xE0) low = 0xA0;   // no overlong forms
      if (c == 0xED) high = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      if (c == 0xF0) low = 0x90;   // no overlong forms
      if (c == 0xF4) high = 0x8F;  // nothing past U+10FFFF
    } else {
      return false;
    }
    if (end - p < length || p[1] < low || p[1] > high) return false;
    for (int i = 2; i < length; ++i) {
      if (p[i] < 0x80 || p[i] > 0xBF) return false;
    }
    p += length;
  }
  return true;
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
