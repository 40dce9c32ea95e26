// The destination policy's grammar: port lists (PortSet) and host patterns
// (ParseHostPattern, HostMatches), as flags, files and identities write them.
#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/policy/destination_policy.h"  // IWYU pragma: associated

namespace egress {

bool HostMatches(absl::string_view host, absl::string_view pattern) {
  if (pattern == "*") return true;
  if (absl::ConsumePrefix(&pattern, "*")) {
    // pattern is now ".example.com": a proper subdomain only.
    return host.size() > pattern.size() && absl::EndsWith(host, pattern);
  }
  return host == pattern;
}

absl::StatusOr<PortSet> PortSet::Parse(absl::string_view list) {
  PortSet set;
  list = absl::StripAsciiWhitespace(list);
  if (list == "*") {
    set.any_ = true;
    return set;
  }
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    item = absl::StripAsciiWhitespace(item);
    int port = 0;
    if (item == "*") {
      return absl::InvalidArgumentError(
          "\"*\" (every port) must be written alone, not in a list");
    }
    if (!absl::SimpleAtoi(item, &port) || port < 1 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", item, "\" is not a port number (1-65535) or \"*\""));
    }
    set.ports_.push_back(port);
  }
  std::sort(set.ports_.begin(), set.ports_.end());
  set.ports_.erase(std::unique(set.ports_.begin(), set.ports_.end()),
                   set.ports_.end());
  return set;
}

bool PortSet::Contains(int port) const {
  return any_ || std::binary_search(ports_.begin(), ports_.end(), port);
}

std::string PortSet::ToString() const {
  return any_ ? "*" : absl::StrJoin(ports_, ",");
}

absl::StatusOr<std::string> ParseHostPattern(absl::string_view text) {
  std::string pattern = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" ", why));
  };
  if (pattern == "*") return pattern;
  if (pattern.empty()) return bad("is empty");
  if (absl::StrContains(pattern, "://") || absl::StrContains(pattern, '/')) {
    return bad("is not a host name (a URL? write the host alone)");
  }
  // An IPv6 literal, with or without brackets.
  absl::string_view literal = pattern;
  if (absl::ConsumePrefix(&literal, "[") && !absl::ConsumeSuffix(&literal, "]"))
    return bad("has an unclosed \"[\"");
  in6_addr address;
  if (absl::StrContains(literal, ':')) {
    if (!ParseAddress(std::string(literal), address)) {
      return bad(
          "has a \":\" but is not an IPv6 address (ports go in "
          "--allow_ports or ports=)");
    }
    // Canonical, as the URL parser writes an IPv6 host.
    char text6[INET6_ADDRSTRLEN] = {};
    inet_ntop(AF_INET6, &address, text6, sizeof(text6));
    return std::string(text6);
  }
  absl::string_view name = pattern;
  const bool wildcard = absl::ConsumePrefix(&name, "*.");
  absl::ConsumeSuffix(&name, ".");  // a fully qualified name's root
  if (absl::StrContains(name, '*')) {
    return bad(
        "uses \"*\" other than as the whole first label (write "
        "\"*.example.com\" for subdomains, or \"*\" alone for every host)");
  }
  if (name.size() > 253) return bad("is longer than 253 characters");
  // No top-level domain is numeric: this is meant as an IPv4 address, and
  // hosts are compared in dotted-decimal form.
  const absl::string_view last = name.substr(name.rfind('.') + 1);
  if (!last.empty() && std::all_of(last.begin(), last.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    in_addr v4;
    if (wildcard || inet_pton(AF_INET, std::string(name).c_str(), &v4) != 1) {
      return bad("is not an IPv4 address in dotted-decimal form (a.b.c.d)");
    }
  }
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    if (label.empty()) return bad("has an empty label");
    if (label.size() > 63) return bad("has a label longer than 63 characters");
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
          c != '_') {
        return bad(absl::StrCat("has the character \"", std::string(1, c),
                                "\", not allowed in a host name"));
      }
    }
  }
  return wildcard ? absl::StrCat("*.", name) : std::string(name);
}

}  // namespace egress
