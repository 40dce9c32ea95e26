#include "tests/fakes/test_certs.h"

#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace egress {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "test_certs: %s failed\n", what);
    std::abort();
  }
}

EVP_PKEY* NewKey() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  Check(key != nullptr, "EVP_EC_gen");
  return key;
}

void AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  Check(ext != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

X509* NewCert(const std::string* cn, EVP_PKEY* key,
              std::chrono::hours not_before, std::chrono::hours not_after) {
  static long serial = 1;
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert), not_before.count() * 3600L);
  X509_gmtime_adj(X509_getm_notAfter(cert), not_after.count() * 3600L);
  if (cn != nullptr) {
    X509_NAME_add_entry_by_txt(
        X509_get_subject_name(cert), "CN", MBSTRING_ASC,
        reinterpret_cast<const unsigned char*>(cn->c_str()), -1, -1, 0);
  }
  X509_set_pubkey(cert, key);
  return cert;
}

void WritePem(const std::string& path, X509* cert, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  Check(f != nullptr, "fopen");
  if (cert) Check(PEM_write_X509(f, cert) == 1, "PEM_write_X509");
  if (key) {
    Check(PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) ==
              1,
          "PEM_write_PrivateKey");
  }
  std::fclose(f);
}

}  // namespace

TestCa::TestCa(std::string dir) : dir_(std::move(dir)) {
  ca_key_ = NewKey();
  const std::string ca_name = "egress test CA";
  ca_cert_ = NewCert(&ca_name, ca_key_, std::chrono::hours(-1),
                     std::chrono::hours(24 * 30));
  X509_set_issuer_name(ca_cert_, X509_get_subject_name(ca_cert_));
  AddExtension(ca_cert_, ca_cert_, NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(ca_cert_, ca_cert_, NID_key_usage,
               "critical,keyCertSign,cRLSign");
  AddExtension(ca_cert_, ca_cert_, NID_subject_key_identifier, "hash");
  Check(X509_sign(ca_cert_, ca_key_, EVP_sha256()) > 0, "X509_sign(ca)");
  ca_path_ = absl::StrCat(dir_, "/ca.pem");
  WritePem(ca_path_, ca_cert_, nullptr);
}

TestCa::~TestCa() {
  X509_free(ca_cert_);
  EVP_PKEY_free(ca_key_);
}

CertFiles TestCa::Issue(const CertSpec& spec) { return Write(spec, false); }
CertFiles TestCa::SelfSigned(const CertSpec& spec) { return Write(spec, true); }

CertFiles TestCa::Write(const CertSpec& spec, bool self_signed) {
  EVP_PKEY* key = NewKey();
  X509* cert = NewCert(spec.common_name ? &spec.name : nullptr, key,
                       spec.not_before, spec.not_after);
  X509* issuer = self_signed ? cert : ca_cert_;
  X509_set_issuer_name(cert, X509_get_subject_name(issuer));
  std::vector<std::string> sans;
  for (const auto& d : spec.dns_names) sans.push_back(absl::StrCat("DNS:", d));
  for (const auto& ip : spec.ips) sans.push_back(absl::StrCat("IP:", ip));
  for (const auto& uri : spec.uris) sans.push_back(absl::StrCat("URI:", uri));
  if (!sans.empty()) {
    AddExtension(cert, issuer, NID_subject_alt_name, absl::StrJoin(sans, ","));
  }
  AddExtension(cert, issuer, NID_basic_constraints, "critical,CA:FALSE");
  AddExtension(cert, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
  Check(X509_sign(cert, self_signed ? key : ca_key_, EVP_sha256()) > 0,
        "X509_sign(leaf)");
  CertFiles files{absl::StrCat(dir_, "/", spec.name, ".pem"),
                  absl::StrCat(dir_, "/", spec.name, ".key")};
  WritePem(files.cert, cert, nullptr);
  WritePem(files.key, nullptr, key);
  X509_free(cert);
  EVP_PKEY_free(key);
  return files;
}

}  // namespace egress
