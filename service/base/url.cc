#include "service/base/url.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace egress {
namespace {

absl::Status Problem(absl::string_view problem) {
  return absl::InvalidArgumentError(problem);
}

// A DNS name or IPv4 literal: letters, digits, '-', '_' and non-empty labels
// separated by dots, at most 253 bytes.
absl::Status ValidateRegName(absl::string_view host) {
  if (host.size() > 253) return Problem("host is longer than 253 bytes");
  size_t label = 0;
  for (size_t i = 0; i <= host.size(); ++i) {
    if (i == host.size() || host[i] == '.') {
      // A single trailing dot (fully qualified name) is allowed.
      if (label == 0 && !(i == host.size() && i > 0)) {
        return Problem(absl::StrFormat("host \"%s\" has an empty label", host));
      }
      if (label > 63) {
        return Problem(
            absl::StrFormat("host \"%s\" has a label over 63 bytes", host));
      }
      label = 0;
      continue;
    }
    char c = host[i];
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_') {
      return Problem(absl::StrFormat(
          "host \"%s\" has an invalid character '%c'", host, c));
    }
    ++label;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint16_t> ParsePort(absl::string_view text) {
  if (text.empty()) return Problem("port is empty after ':'");
  if (text.size() > 5 || !std::all_of(text.begin(), text.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    return Problem(
        absl::StrFormat("port \"%s\" is not a number in 1-65535", text));
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text, &port) || port < 1 || port > 65535) {
    return Problem(absl::StrFormat("port %s is out of range 1-65535", text));
  }
  return static_cast<uint16_t>(port);
}

// Hosts that inet_aton reads as an IPv4 address, in any of its legacy spellings
// ("2130706433", "0x7f.1", "0177.0.0.1", "127.1"), are that address: resolvers
// and browsers read them so too, and the policy must see the real destination.
std::optional<std::string> CanonicalIpv4(absl::string_view host) {
  const bool numeric = std::all_of(host.begin(), host.end(), [](char c) {
    return absl::ascii_isxdigit(static_cast<unsigned char>(c)) || c == '.' ||
           c == 'x' || c == 'X';
  });
  if (!numeric) return std::nullopt;
  in_addr addr;
  const std::string copy(host);
  if (inet_aton(copy.c_str(), &addr) == 0) return std::nullopt;
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &addr, text, sizeof(text));
  return std::string(text);
}

absl::Status ParseAuthority(absl::string_view authority, Origin& origin) {
  if (authority.empty()) return Problem("has no host");
  if (authority.find('@') != absl::string_view::npos) {
    return Problem(
        "user info (user:password@) is not allowed; send an "
        "Authorization header instead");
  }
  absl::string_view host;
  absl::string_view rest;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return Problem("IPv6 address is missing its closing ']'");
    }
    host = authority.substr(1, close - 1);
    rest = authority.substr(close + 1);
    in6_addr addr;
    std::string host_copy(host);
    if (inet_pton(AF_INET6, host_copy.c_str(), &addr) != 1) {
      return Problem(absl::StrFormat("\"[%s]\" is not an IPv6 address", host));
    }
    if (!rest.empty() && rest.front() != ':') {
      return Problem("unexpected characters after the IPv6 address");
    }
    // One spelling per address: "::ffff:127.0.0.1" and "::ffff:7f00:1" are the
    // same destination for the policy and the session cache.
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(AF_INET6, &addr, text, sizeof(text));
    origin.host = text;
  } else {
    size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    rest = colon == absl::string_view::npos ? absl::string_view()
                                            : authority.substr(colon);
    if (host.empty()) return Problem("has no host");
    absl::Status status = ValidateRegName(host);
    if (!status.ok()) return status;
    // One spelling per host, decided once here: "Example.COM." is
    // "example.com" for the policy, the session cache, DNS, the Host header,
    // SNI and the certificate check alike.
    absl::ConsumeSuffix(&host, ".");
    origin.host = CanonicalIpv4(host).value_or(absl::AsciiStrToLower(host));
  }
  if (rest.empty()) {
    origin.port = origin.scheme == "https" ? 443 : 80;
  } else {
    absl::StatusOr<uint16_t> port = ParsePort(rest.substr(1));
    if (!port.ok()) return port.status();
    origin.port = *port;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UpstreamRequest> ParseRequestUrl(absl::string_view url,
                                                size_t max_url_bytes) {
  if (url.empty()) return Problem("is empty");
  if (url.size() > max_url_bytes) {
    return Problem(absl::StrFormat("is %d bytes, over the limit of %d",
                                   url.size(), max_url_bytes));
  }
  for (size_t i = 0; i < url.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(url[i]);
    if (c <= 0x20 || c == 0x7f) {
      return Problem(
          absl::StrFormat("contains a space or control character "
                          "(0x%02x) at offset %d",
                          c, i));
    }
    if (c >= 0x80) {
      return Problem(
          absl::StrFormat("contains a non-ASCII byte at offset %d; "
                          "percent-encode it",
                          i));
    }
  }
  size_t scheme_end = url.find("://");
  if (scheme_end == absl::string_view::npos) {
    return Problem("must be absolute, like http://host/path");
  }
  std::string scheme = absl::AsciiStrToLower(url.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") {
    return Problem(absl::StrFormat(
        "unsupported scheme \"%s\"; use http:// or https://", scheme));
  }
  absl::string_view rest = url.substr(scheme_end + 3);
  size_t authority_end = rest.find_first_of("/?#");
  UpstreamRequest request;
  request.origin.scheme = std::move(scheme);
  absl::Status status =
      ParseAuthority(rest.substr(0, authority_end), request.origin);
  if (!status.ok()) return status;

  absl::string_view target = authority_end == absl::string_view::npos
                                 ? absl::string_view()
                                 : rest.substr(authority_end);
  target =
      target.substr(0, target.find('#'));  // fragments stay with the caller
  if (target.empty() || target.front() == '?') {
    request.target = absl::StrCat("/", target);
  } else {
    request.target = std::string(target);
  }
  return request;
}

absl::StatusOr<Origin> ParseOrigin(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  const size_t scheme_end = text.find("://");
  const std::string scheme = absl::AsciiStrToLower(
      text.substr(0, scheme_end == absl::string_view::npos ? 0 : scheme_end));
  if (scheme != "http" && scheme != "https") {
    return Problem("is not http://host[:port] or https://host[:port]");
  }
  absl::string_view authority = text.substr(scheme_end + 3);
  absl::ConsumeSuffix(&authority, "/");
  if (authority.find_first_of("/?#") != absl::string_view::npos) {
    return Problem(
        "has a path, query or fragment; an origin is only "
        "scheme://host[:port]");
  }
  Origin origin;
  origin.scheme = scheme;
  absl::Status status = ParseAuthority(authority, origin);
  if (!status.ok()) return status;
  return origin;
}

}  // namespace egress
