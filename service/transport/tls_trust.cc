#include "service/transport/tls_trust.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace egress {

namespace {

// OpenSSL's oldest queued error, as text; clears the queue.
std::string OpenSslReason() {
  char reason[256] = "unknown error";
  const unsigned long code = ERR_get_error();
  if (code != 0) ERR_error_string_n(code, reason, sizeof(reason));
  ERR_clear_error();
  return reason;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TrustStore>> TrustStore::Load(
    const std::string& ca_file, bool system_roots, const std::string& setting) {
  X509_STORE* store = X509_STORE_new();
  if (store == nullptr) return absl::InternalError("X509_STORE_new failed");
  std::unique_ptr<TrustStore> trust(new TrustStore(store));
  if (system_roots && X509_STORE_set_default_paths(store) != 1) {
    ERR_clear_error();
    return absl::InternalError("cannot load the system's trusted certificates");
  }
  if (!ca_file.empty() && X509_STORE_load_file(store, ca_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(setting, ": cannot load PEM certificates from ", ca_file,
                     ": ", OpenSslReason()));
  }
  return trust;
}

absl::StatusOr<std::shared_ptr<const ClientIdentity>> ClientIdentity::Load(
    const std::string& cert_file, const std::string& key_file,
    const std::string& setting) {
  std::shared_ptr<ClientIdentity> identity(new ClientIdentity);
  const auto fail = [&](const std::string& what, const std::string& file) {
    return absl::InvalidArgumentError(absl::StrCat(setting, ": cannot load ",
                                                   what, " from ", file, ": ",
                                                   OpenSslReason()));
  };
  {
    BIO* bio = BIO_new_file(cert_file.c_str(), "r");
    if (bio == nullptr) return fail("a PEM certificate", cert_file);
    identity->leaf_ = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    if (identity->leaf_ != nullptr) {
      identity->chain_ = sk_X509_new_null();
      while (X509* next = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
        sk_X509_push(identity->chain_, next);
      }
      ERR_clear_error();  // the end of the file
    }
    BIO_free(bio);
    if (identity->leaf_ == nullptr) {
      return fail("a PEM certificate", cert_file);
    }
  }
  {
    BIO* bio = BIO_new_file(key_file.c_str(), "r");
    if (bio == nullptr) return fail("a PEM private key", key_file);
    identity->key_ = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (identity->key_ == nullptr) return fail("a PEM private key", key_file);
  }
  if (X509_check_private_key(identity->leaf_, identity->key_) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(setting, ": the key in ", key_file,
                     " does not match the certificate in ", cert_file));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  X509_digest(identity->leaf_, EVP_sha256(), digest, &length);
  identity->fingerprint_ = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), length));
  return identity;
}

ClientIdentity::~ClientIdentity() {
  X509_free(leaf_);
  sk_X509_pop_free(chain_, X509_free);
  EVP_PKEY_free(key_);
}

void ClientIdentity::Use(SSL_CTX* ctx) const {
  // Each context takes its own references (override = 1 replaces any).
  SSL_CTX_use_cert_and_key(ctx, leaf_, key_, chain_, 1);
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
