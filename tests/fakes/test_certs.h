// Test certificates, generated with the OpenSSL API into a directory (the
// test's TEST_TMPDIR): a CA, leaves it signs, self-signed and expired ones.
//
// Usage:
//   TestCa ca(dir);                                  // writes ca.pem
//   CertFiles leaf = ca.Issue("leaf", {"localhost"}, {"127.0.0.1"});
//   httplib::SSLServer server(leaf.cert.c_str(), leaf.key.c_str());
//
// Keys are EC P-256. Thread safety: not thread-safe; use from the test thread.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <string>
#include <vector>

namespace egress {

struct CertFiles {
  std::string cert;  // PEM certificate path
  std::string key;   // PEM private key path
};

struct CertSpec {
  std::string name;                    // file stem and common name
  std::vector<std::string> dns_names;  // subjectAltName DNS entries
  std::vector<std::string> ips;        // subjectAltName IP entries
  // Validity relative to now.
  std::chrono::hours not_before = std::chrono::hours(-1);
  std::chrono::hours not_after = std::chrono::hours(24);
  std::vector<std::string> uris = {};  // subjectAltName URIs (SPIFFE IDs)
  bool common_name = true;             // false: a subject without a CN
};

class TestCa {
 public:
  // Generates the CA key and certificate into `dir`/ca.pem.
  explicit TestCa(std::string dir);
  ~TestCa();
  TestCa(const TestCa&) = delete;
  TestCa& operator=(const TestCa&) = delete;

  const std::string& cert_path() const { return ca_path_; }

  // A leaf certificate signed by this CA.
  CertFiles Issue(const CertSpec& spec);
  // A leaf certificate signed by its own key (not by this CA).
  CertFiles SelfSigned(const CertSpec& spec);

 private:
  CertFiles Write(const CertSpec& spec, bool self_signed);

  std::string dir_;
  std::string ca_path_;
  EVP_PKEY* ca_key_ = nullptr;
  X509* ca_cert_ = nullptr;
};

}  // namespace egress
