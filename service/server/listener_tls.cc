#include "service/server/listener_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "service/policy/policy_files.h"

namespace egress {
namespace {

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

// The first PEM certificate in `pem`, or nullptr.
X509Ptr FirstCertificate(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  X509Ptr x509(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr),
               X509_free);
  ERR_clear_error();
  return x509;
}

// That `cert` is a PEM certificate (chain), `key` a PEM private key, and that
// they belong together: gRPC would only fail later, saying "cannot listen".
absl::Status CheckCertAndKey(const std::string& cert_file,
                             const std::string& key_file,
                             const std::string& cert, const std::string& key) {
  X509Ptr x509 = FirstCertificate(cert);
  if (x509 == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_cert: ", cert_file, " holds no PEM certificate"));
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(
      BIO_new_mem_buf(key.data(), static_cast<int>(key.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr),
      EVP_PKEY_free);
  ERR_clear_error();
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key: ", key_file,
        " holds no PEM private key (or one protected by a passphrase)"));
  }
  if (X509_check_private_key(x509.get(), pkey.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key: ", key_file, " is not the key of --tls_cert ", cert_file));
  }
  return absl::OkStatus();
}

// ALPN: gRPC is HTTP/2 only.
int SelectH2(SSL*, const unsigned char** out, unsigned char* outlen,
             const unsigned char* in, unsigned int inlen, void*) {
  static const unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kH2, sizeof(kH2), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

absl::StatusOr<std::shared_ptr<SSL_CTX>> ListenerTls(
    const std::string& cert_file, const std::string& key_file,
    const std::string& client_ca_file) {
  if (cert_file.empty()) return std::shared_ptr<SSL_CTX>();
  absl::StatusOr<std::string> cert = ReadFlagFile(cert_file, "tls_cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadFlagFile(key_file, "tls_key");
  if (!key.ok()) return key.status();
  absl::Status pair = CheckCertAndKey(cert_file, key_file, *cert, *key);
  if (!pair.ok()) return pair;
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(),
                                  SSL_FILETYPE_PEM) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_cert/--tls_key: ", cert_file, ", ", key_file,
                     ": OpenSSL would not load them"));
  }
  if (!client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadFlagFile(client_ca_file, "client_ca");
    if (!ca.ok()) return ca.status();
    if (FirstCertificate(*ca) == nullptr ||
        SSL_CTX_load_verify_locations(ctx.get(), client_ca_file.c_str(),
                                      nullptr) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat(
          "--client_ca: ", client_ca_file, " holds no PEM certificate"));
    }
    SSL_CTX_set_verify(
        ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  SSL_CTX_set_alpn_select_cb(ctx.get(), SelectH2, nullptr);
  return ctx;
}

}  // namespace egress
