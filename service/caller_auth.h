// CallerAuth: who is calling, and whether they may.
//
// Identities come from, in order: a bearer token (`authorization: Bearer T`
// metadata) looked up in --auth_tokens_file; the common name of a client
// certificate verified by mutual TLS (--client_ca); else "anonymous". When a
// tokens file is configured, a call without a valid token is UNAUTHENTICATED,
// even with a client certificate. Tokens are compared in constant time (SHA-256
// digests, CRYPTO_memcmp over every entry) and never logged.
//
// --identity_hosts_file limits identities to some hosts: one line per identity,
// "identity host[,host...]" with exact names or *.suffix patterns. Identities
// without a line are limited only by the service-wide policy.
//
// Files: one entry per line, '#' starts a comment. Reload() re-reads both
// (egressd does it on SIGHUP); a file that fails to load keeps the old entries.
//
// Thread safety: thread-safe. Authenticate reads an immutable snapshot, swapped
// atomically by Reload.
#pragma once

#include <grpcpp/server_context.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace egress {

struct Caller {
  std::string identity;  // "anonymous" without credentials
  // The hosts this caller may reach, when its identity has a line in
  // --identity_hosts_file; nullptr otherwise.
  std::shared_ptr<const std::vector<std::string>> allowed_hosts;
};

class CallerAuth {
 public:
  // Loads the files (either may be empty: not configured). Errors name the file
  // and the line.
  // `identity_hosts` (from the config file) is the base that
  // `identity_hosts_file` extends and overrides per identity.
  static absl::StatusOr<std::unique_ptr<CallerAuth>> Create(
      std::string tokens_file, std::string identity_hosts_file,
      std::map<std::string, std::vector<std::string>> identity_hosts = {});

  absl::StatusOr<Caller> Authenticate(
      const grpc::CallbackServerContext& context) const;

  // Re-reads the files; on error keeps the entries it had.
  absl::Status Reload();

  bool requires_token() const { return !tokens_file_.empty(); }

 private:
  struct Snapshot {
    struct Token {
      unsigned char digest[32];
      std::string identity;
    };
    std::vector<Token> tokens;
    std::map<std::string, std::shared_ptr<const std::vector<std::string>>>
        hosts;
  };

  CallerAuth(std::string tokens_file, std::string identity_hosts_file,
             std::map<std::string, std::vector<std::string>> identity_hosts)
      : tokens_file_(std::move(tokens_file)),
        identity_hosts_file_(std::move(identity_hosts_file)),
        static_hosts_(std::move(identity_hosts)) {}
  absl::StatusOr<std::shared_ptr<const Snapshot>> Load() const;
  std::shared_ptr<const Snapshot> snapshot() const;

  const std::string tokens_file_;
  const std::string identity_hosts_file_;
  const std::map<std::string, std::vector<std::string>> static_hosts_;
  mutable std::mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_;  // guarded by mu_
};

}  // namespace egress
