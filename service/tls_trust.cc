#include "service/tls_trust.h"

#include <openssl/err.h>

#include "absl/strings/str_cat.h"

namespace egress {

absl::StatusOr<std::unique_ptr<TrustStore>> TrustStore::Load(
    const std::string& ca_file) {
  X509_STORE* store = X509_STORE_new();
  if (store == nullptr) return absl::InternalError("X509_STORE_new failed");
  std::unique_ptr<TrustStore> trust(new TrustStore(store));
  if (X509_STORE_set_default_paths(store) != 1) {
    ERR_clear_error();
    return absl::InternalError("cannot load the system's trusted certificates");
  }
  if (!ca_file.empty() && X509_STORE_load_file(store, ca_file.c_str()) != 1) {
    char reason[256] = "unknown error";
    ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--ca_file: cannot load PEM certificates from ", ca_file,
                     ": ", reason));
  }
  return trust;
}

TrustStore::~TrustStore() { X509_STORE_free(store_); }

}  // namespace egress
