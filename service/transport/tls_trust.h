// TrustStore: the roots that upstream certificates are verified against: the
// system store (/etc/ssl/certs) plus the PEM file of --ca_file, loaded once.
//
// Each TLS session's SSL_CTX takes its own reference to the one X509_STORE
// (X509_STORE_up_ref), so the roots are parsed once per process, not per
// session.
//
// VerifyDuringHandshake makes one session's SSL_CTX verify the upstream's
// chain against such a store and its certificate against the host name during
// the handshake (not after it, as httplib would, reloading the system roots
// into every new context).
//
// Thread safety: X509_STORE is internally locked; the store may be shared by
// all workers.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace egress {

class TrustStore {
 public:
  // The system roots, plus those in `ca_file` when it is not empty.
  static absl::StatusOr<std::unique_ptr<TrustStore>> Load(
      const std::string& ca_file);
  ~TrustStore();
  TrustStore(const TrustStore&) = delete;
  TrustStore& operator=(const TrustStore&) = delete;

  // Borrowed; take a reference (X509_STORE_up_ref) to keep it.
  X509_STORE* get() const { return store_; }

 private:
  explicit TrustStore(X509_STORE* store) : store_(store) {}
  X509_STORE* const store_;
};

// Makes OpenSSL verify the peer during every handshake on `ctx`: the chain
// against `store` (a reference is taken; nullptr: the system default paths)
// and the certificate against `host` (a name, or an IP address literal, which
// must then be in the certificate as an IP). The first verification failure
// of a handshake is written to `*first_failure` (an X509_V_ERR_* code), which
// the caller resets to X509_V_OK before each connect. REQUIRES:
// `first_failure` outlives `ctx`.
void VerifyDuringHandshake(SSL_CTX* ctx, X509_STORE* store,
                           const std::string& host, long* first_failure);

}  // namespace egress
