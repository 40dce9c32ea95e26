// CallerAuth: who is calling, and whether they may.
//
// Identities come from, in order: a bearer token (`authorization: Bearer T`
// metadata) looked up in --auth_tokens_file; the client certificate verified
// by mutual TLS (--client_ca): its SPIFFE ID (the one URI SAN with the
// spiffe:// scheme, as Kubernetes workload identities carry) when it has one,
// else its common name; else "anonymous" when neither is configured. A
// certificate with neither a SPIFFE ID nor a common name, or with more than
// one SPIFFE ID, is UNAUTHENTICATED: never "anonymous". When a tokens file is
// configured, a call without a valid token is UNAUTHENTICATED, even with a
// client certificate. Tokens are compared in constant time (SHA-256 digests,
// CRYPTO_memcmp over every entry) and never logged.
//
// --identity_hosts_file limits identities to some hosts and ports (format in
// policy_files.h); identities without a line are limited only by the
// service-wide policy. Identities in both files may be SPIFFE IDs.
//
// Files: one entry per line, '#' starts a comment; anything malformed is an
// error naming the file and the line. Reload() re-reads both (egressd does it
// on SIGHUP); a file that fails to load keeps the old entries.
//
// Thread safety: thread-safe. Authenticate reads an immutable snapshot, swapped
// atomically by Reload.
#pragma once

#include <grpcpp/server_context.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "service/policy/destination_policy.h"
#include "service/policy/policy_files.h"

namespace egress {

struct Caller {
  std::string identity;  // "anonymous" without credentials
  // The hosts and ports this caller may reach, when its identity has rules
  // (--identity_hosts_file or the config file); nullptr otherwise.
  std::shared_ptr<const CallerRules> rules;
};

// The identity a verified client certificate (PEM) carries: its one SPIFFE ID,
// else its common name. UNAUTHENTICATED when it has neither, or more than one
// spiffe:// URI SAN, or an invalid one.
absl::StatusOr<std::string> CertificateIdentity(absl::string_view pem);

class CallerAuth {
 public:
  // Loads the files (either may be empty: not configured). Errors name the file
  // and the line.
  // `identity_hosts` (from the config file) is the base that
  // `identity_hosts_file` extends and overrides per identity.
  static absl::StatusOr<std::unique_ptr<CallerAuth>> Create(
      std::string tokens_file, std::string identity_hosts_file,
      std::map<std::string, IdentityEntry> identity_hosts = {});

  // The rules of `identity` (nullptr: none), as Authenticate would attach
  // them; for --policy_check.
  std::shared_ptr<const CallerRules> RulesOf(const std::string& identity) const;

  absl::StatusOr<Caller> Authenticate(
      const grpc::ServerContextBase& context) const;

  // Where mutual-TLS client certificates come from when TLS is terminated
  // before gRPC (GrpcFront): the PEM for a call's ServerContext::peer(), or
  // "". Unset: gRPC's AuthContext. With `required` (--client_ca), a call
  // without one is UNAUTHENTICATED: it did not come through the front's TLS
  // (a local process on gRPC's own socket). REQUIRES: called before any
  // Authenticate.
  void SetPeerCertificates(
      std::function<std::string(const std::string& peer)> lookup,
      bool required) {
    peer_certificates_ = std::move(lookup);
    peer_certificate_required_ = required;
  }
  // Re-reads the files; on error keeps the entries it had.
  absl::Status Reload();
  // A reload in two steps, so that it is one step of a larger one (the
  // config file's): Prepare reads the files with `identity_hosts` (the
  // config file's new entries) as the base, changing nothing; Commit makes
  // the result current.
  struct Snapshot;
  struct Prepared {
    std::shared_ptr<const Snapshot> snapshot;
    std::map<std::string, IdentityEntry> identity_hosts;
  };
  absl::StatusOr<Prepared> Prepare(
      std::map<std::string, IdentityEntry> identity_hosts) const;
  void Commit(Prepared prepared);

  bool requires_token() const { return !tokens_file_.empty(); }

  // (Public for Prepared; its fields are CallerAuth's business.)
  struct Snapshot {
    struct Token {
      unsigned char digest[32];
      std::string identity;
    };
    std::vector<Token> tokens;
    IdentityRuleMap rules;
  };

 private:
  CallerAuth(std::string tokens_file, std::string identity_hosts_file,
             std::map<std::string, IdentityEntry> identity_hosts)
      : tokens_file_(std::move(tokens_file)),
        identity_hosts_file_(std::move(identity_hosts_file)),
        static_hosts_(std::move(identity_hosts)) {}
  absl::StatusOr<std::shared_ptr<const Snapshot>> Load(
      const std::map<std::string, IdentityEntry>& static_hosts) const;
  std::shared_ptr<const Snapshot> snapshot() const;

  const std::string tokens_file_;
  std::function<std::string(const std::string& peer)> peer_certificates_;
  bool peer_certificate_required_ = false;
  const std::string identity_hosts_file_;
  mutable std::mutex mu_;
  std::map<std::string, IdentityEntry> static_hosts_;  // guarded by mu_
  std::shared_ptr<const Snapshot> snapshot_;           // guarded by mu_
};

}  // namespace egress
