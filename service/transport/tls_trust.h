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
  // The system roots (unless `system_roots` is false), plus those in
  // `ca_file` when it is not empty. Errors name `setting` ("--ca_file").
  static absl::StatusOr<std::unique_ptr<TrustStore>> Load(
      const std::string& ca_file, bool system_roots = true,
      const std::string& setting = "--ca_file");
  ~TrustStore();
  TrustStore(const TrustStore&) = delete;
  TrustStore& operator=(const TrustStore&) = delete;

  // Borrowed; take a reference (X509_STORE_up_ref) to keep it.
  X509_STORE* get() const { return store_; }

 private:
  explicit TrustStore(X509_STORE* store) : store_(store) {}
  X509_STORE* const store_;
};

// A client certificate (with the chain after it in the same PEM file) and its
// key, loaded once and presented by every session that uses it (mTLS).
class ClientIdentity {
 public:
  // Errors name `setting` and the file.
  static absl::StatusOr<std::shared_ptr<const ClientIdentity>> Load(
      const std::string& cert_file, const std::string& key_file,
      const std::string& setting);
  ~ClientIdentity();
  ClientIdentity(const ClientIdentity&) = delete;
  ClientIdentity& operator=(const ClientIdentity&) = delete;

  // Makes `ctx` present this certificate when the upstream asks for one.
  void Use(SSL_CTX* ctx) const;
  // The leaf certificate's SHA-256, in hex: sessions presenting different
  // certificates are pooled apart.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  ClientIdentity() = default;
  X509* leaf_ = nullptr;
  STACK_OF(X509) * chain_ = nullptr;
  EVP_PKEY* key_ = nullptr;
  std::string fingerprint_;
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
