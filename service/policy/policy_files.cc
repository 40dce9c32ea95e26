#include "service/policy/policy_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace egress {
namespace {

bool NameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-' || c == '@' || c == ':';
}

absl::Status ValidateSpiffeId(absl::string_view id) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", id, "\" is not a SPIFFE ID: ", why));
  };
  absl::string_view rest = id;
  absl::ConsumePrefix(&rest, "spiffe://");
  const size_t slash = rest.find('/');
  const absl::string_view domain = rest.substr(0, slash);
  if (domain.empty()) return bad("no trust domain");
  for (char c : domain) {
    if (!absl::ascii_islower(static_cast<unsigned char>(c)) &&
        !absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '.' &&
        c != '-' && c != '_') {
      return bad("the trust domain allows only a-z, 0-9, \".\", \"-\", \"_\"");
    }
  }
  if (slash == absl::string_view::npos) return absl::OkStatus();
  for (absl::string_view segment :
       absl::StrSplit(rest.substr(slash + 1), '/')) {
    if (segment.empty()) return bad("an empty path segment");
    if (segment == "." || segment == "..")
      return bad("a \".\" or \"..\" segment");
    for (char c : segment) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
          c != '-' && c != '_') {
        return bad(
            "path segments allow only letters, digits, \".\", \"-\", "
            "\"_\"");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadFlagFile(const std::string& path,
                                         absl::string_view flag) {
  // read(2) rather than a stream: a directory or an I/O error must be an
  // error, not an empty file (an identity file read as empty would limit
  // nobody).
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  std::string text;
  ssize_t n = -1;
  if (fd >= 0) {
    char buffer[64 << 10];
    while ((n = read(fd, buffer, sizeof(buffer))) > 0 ||
           (n < 0 && errno == EINTR)) {
      if (n > 0) text.append(buffer, static_cast<size_t>(n));
    }
  }
  const int error = errno;
  if (fd >= 0) close(fd);
  if (n < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, ": cannot read ", path, " (", std::strerror(error), ")"));
  }
  return text;
}

absl::Status ForEachEntry(
    absl::string_view text, absl::string_view source,
    const std::function<absl::Status(const std::vector<absl::string_view>&,
                                     int line)>& entry) {
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = line.substr(0, line.find('#'));
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    absl::Status status = entry(fields, number);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":", number, ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateIdentity(absl::string_view identity) {
  if (absl::StartsWithIgnoreCase(identity, "spiffe://")) {
    if (!absl::StartsWith(identity, "spiffe://")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", identity, "\" is not a SPIFFE ID: the scheme is lower-case"));
    }
    return ValidateSpiffeId(identity);
  }
  if (identity.empty() || identity.size() > 255) {
    return absl::InvalidArgumentError("an identity has 1-255 characters");
  }
  for (char c : identity) {
    if (!NameChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "identity \"", identity,
          "\" has a character other than letters, digits, \".\", \"_\", "
          "\"-\", \"@\", \":\" (or write a SPIFFE ID)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const CallerRules>> MakeCallerRules(
    absl::string_view hosts, absl::string_view ports, std::string source,
    std::optional<uint32_t> max_inflight) {
  auto rules = std::make_shared<CallerRules>();
  rules->source = std::move(source);
  if (max_inflight) rules->max_inflight = *max_inflight;
  for (absl::string_view host : absl::StrSplit(hosts, ',')) {
    if (absl::StripAsciiWhitespace(host).empty()) {
      return absl::InvalidArgumentError(
          "empty host entry (write \"*\" for every host)");
    }
    absl::StatusOr<std::string> pattern = ParseHostPattern(host);
    if (!pattern.ok()) return pattern.status();
    rules->hosts.push_back(*std::move(pattern));
  }
  if (!ports.empty()) {
    absl::StatusOr<PortSet> set = PortSet::Parse(ports);
    if (!set.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("ports=: ", set.status().message()));
    }
    rules->ports = *std::move(set);
  }
  return std::shared_ptr<const CallerRules>(std::move(rules));
}

absl::StatusOr<IdentityRuleMap> ParseIdentityFile(absl::string_view text,
                                                  absl::string_view source) {
  IdentityRuleMap out;
  std::map<std::string, int> line_of;
  absl::Status status = ForEachEntry(
      text, source,
      [&](const std::vector<absl::string_view>& f, int line) -> absl::Status {
        if (f.size() < 2 || f.size() > 4) {
          return absl::InvalidArgumentError(
              "expected \"IDENTITY host[,host...] [ports=PORT[,PORT...]] "
              "[max_inflight=N]\"");
        }
        std::optional<absl::string_view> ports_option;
        std::optional<uint32_t> max_inflight;
        for (size_t i = 2; i < f.size(); ++i) {
          absl::string_view value = f[i];
          if (absl::ConsumePrefix(&value, "ports=")) {
            if (ports_option) return absl::InvalidArgumentError("ports= twice");
            ports_option = value;
          } else if (absl::ConsumePrefix(&value, "max_inflight=")) {
            uint32_t n = 0;
            if (max_inflight) {
              return absl::InvalidArgumentError("max_inflight= twice");
            }
            if (!absl::SimpleAtoi(value, &n) || n > 1000000) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "max_inflight=", value,
                  ": expected a number of calls, 0 (no limit) to 1000000"));
            }
            max_inflight = n;
          } else {
            return absl::InvalidArgumentError(
                absl::StrCat("unknown option \"", value,
                             "\" (expected ports= or max_inflight=)"));
          }
        }
        absl::Status valid = ValidateIdentity(f[0]);
        if (!valid.ok()) return valid;
        const std::string identity(f[0]);
        auto [previous, added] = line_of.emplace(identity, line);
        if (!added) {
          return absl::InvalidArgumentError(
              absl::StrCat("identity ", identity, " already has a line (",
                           previous->second, ")"));
        }
        const absl::string_view ports = ports_option.value_or("");
        if (ports_option && ports.empty()) {
          return absl::InvalidArgumentError("ports= is empty");
        }
        absl::StatusOr<std::shared_ptr<const CallerRules>> rules =
            MakeCallerRules(f[1], ports, absl::StrCat(source, ":", line),
                            max_inflight);
        if (!rules.ok()) return rules.status();
        out[identity] = *std::move(rules);
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return out;
}

}  // namespace egress
