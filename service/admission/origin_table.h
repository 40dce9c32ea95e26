// OriginTable: the `origins` entries of the config file (origins.proto),
// loaded and checked once, and the route of each call's origin.
//
// An entry matches an exact origin ("https://api.openai.com"), a host pattern
// with the policy's grammar ("*.example.com": any scheme and port), or "*";
// the first entry that matches wins. An origin that no entry matches gets the
// default route: the service-wide settings.
//
// A route holds what the entry changes:
// - the session options (client certificate, CA bundle, TLS minimum, SNI,
//   connect timeout, keep-alive and idle bounds, the upstream proxy), with a
//   pool_tag that keeps its sessions apart from every other set of options:
//   a connection made with one entry's certificate never serves a call that
//   should not present it;
// - the headers it injects (InjectedHeader), their values read from files
//   and read again when a file changes (a rotated Kubernetes Secret);
// - its outlier ejection rule and its in-flight limit.
//
// Building checks everything (files readable, certificates matching their
// keys, patterns well formed); an error names the source file, the entry
// (origins[2] "*.example.com") and the field. A table is immutable:
// OriginRoutes swaps a whole new one in on reload, and a call keeps the route
// it started with (RouteFor's shared_ptr keeps the table alive).
//
// Thread safety: a built table is immutable; InjectedHeader::Value is
// thread-safe; OriginRoutes is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/admission/origins.pb.h"
#include "service/admission/rate_limits.h"
#include "service/base/defaults.h"
#include "service/base/http_types.h"
#include "service/base/secret_file.h"
#include "service/transport/http_session.h"

namespace egress {

// A header an origin entry adds to the calls it routes.
struct InjectedHeader {
  std::string name;  // as configured; compared without case
  std::shared_ptr<const SecretFile> value;
  std::vector<std::string> callers;  // identities; empty: every caller
  bool caller_may_set = false;

  bool AppliesTo(absl::string_view identity) const;
};

// When an origin is ejected (outlier_ejection.h).
struct EjectionRule {
  int consecutive_failures = defaults::kEjectAfterFailures;  // 0: off
  int consecutive_5xx = defaults::kEjectAfter5xx;            // 0: off
  std::chrono::nanoseconds base_time = defaults::kEjectionBaseTime;
  std::chrono::nanoseconds max_time = defaults::kEjectionMaxTime;
};

// What the entry that matched an origin sets.
struct OriginRoute {
  // `origins[1] "*.example.com"`; "default" for the service-wide settings.
  std::string entry;
  // The sessions' options (service-wide ones with the entry's changes).
  SessionOptions session;
  // Whether `session` differs from the service-wide options (else calls use
  // the workers' own, and their sessions).
  bool own_sessions = false;
  std::vector<InjectedHeader> inject;
  EjectionRule ejection;
  // Replaces --max_inflight_per_origin when set (0: no limit).
  std::optional<size_t> max_inflight;
  // The origin's rate limit, and how long a call over it may wait for its
  // turn (unset: --rate_limit_max_wait).
  std::optional<RateLimit> rate_limit;
  std::optional<std::chrono::nanoseconds> rate_max_wait;
};

class OriginTable {
 public:
  // Loads `entries` (from `source`, the config file's name, for errors).
  static absl::StatusOr<std::shared_ptr<const OriginTable>> Build(
      const std::vector<egress::config::v1::OriginEntry>& entries,
      const SessionOptions& defaults, absl::string_view source);

  // The route of `origin`: the first entry that matches, else the default.
  const OriginRoute& Route(const Origin& origin) const;
  // The same, keeping `table` alive as long as the route is held.
  static std::shared_ptr<const OriginRoute> RouteFor(
      std::shared_ptr<const OriginTable> table, const Origin& origin);

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    // An exact origin, or a host pattern (any scheme and port).
    std::optional<Origin> origin;
    std::string host_pattern;
    OriginRoute route;
    // With a proxy: the hosts reached directly, and their route.
    std::vector<std::string> no_proxy;
    OriginRoute direct;
  };
  OriginTable() = default;

  std::vector<Entry> entries_;
  OriginRoute default_route_;
};

// The table in use. Replace swaps in a new one whole; calls that hold a route
// of the old one finish with it.
class OriginRoutes {
 public:
  explicit OriginRoutes(std::shared_ptr<const OriginTable> table)
      : table_(std::move(table)) {}
  std::shared_ptr<const OriginTable> Current() const {
    return std::atomic_load(&table_);
  }
  void Replace(std::shared_ptr<const OriginTable> table) {
    std::atomic_store(&table_, std::move(table));
  }
  std::shared_ptr<const OriginRoute> RouteFor(const Origin& origin) const {
    return OriginTable::RouteFor(Current(), origin);
  }

 private:
  std::shared_ptr<const OriginTable> table_;
};

}  // namespace egress
