// TrustStore: the roots that upstream certificates are verified against: the
// system store (/etc/ssl/certs) plus the PEM file of --ca_file, loaded once.
//
// Each TLS session's SSL_CTX takes its own reference to the one X509_STORE
// (X509_STORE_up_ref), so the roots are parsed once per process, not per
// session.
//
// Thread safety: X509_STORE is internally locked; the store may be shared by
// all workers.
#pragma once

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

}  // namespace egress
