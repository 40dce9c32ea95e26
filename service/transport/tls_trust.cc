#include "service/transport/tls_trust.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

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

namespace {

// SSL_CTX ex_data slot holding the `long` that receives the first failure.
int FirstFailureIndex() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Records the first verification failure of a handshake, and lets OpenSSL
// fail the handshake.
int RecordFirstFailure(int ok, X509_STORE_CTX* store_ctx) {
  if (ok == 0) {
    SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(
        store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
    auto* result = static_cast<long*>(
        SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), FirstFailureIndex()));
    if (result != nullptr && *result == X509_V_OK) {
      *result = X509_STORE_CTX_get_error(store_ctx);
    }
  }
  return ok;
}

}  // namespace

void VerifyDuringHandshake(SSL_CTX* ctx, X509_STORE* store,
                           const std::string& host, long* first_failure) {
  if (store != nullptr) {
    X509_STORE_up_ref(store);  // the context owns a reference
    SSL_CTX_set_cert_store(ctx, store);
  } else {
    SSL_CTX_set_default_verify_paths(ctx);
  }
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  // An address literal must be in the certificate as an IP; anything else
  // is a name.
  if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }
  SSL_CTX_set_ex_data(ctx, FirstFailureIndex(), first_failure);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, RecordFirstFailure);
}

}  // namespace egress
