#include "service/admission/caller_auth.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace egress {
namespace {

void Sha256(absl::string_view data, unsigned char out[32]) {
  unsigned int length = 32;
  EVP_Digest(data.data(), data.size(), out, &length, EVP_sha256(), nullptr);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CallerAuth>> CallerAuth::Create(
    std::string tokens_file, std::string identity_hosts_file,
    std::map<std::string, IdentityEntry> identity_hosts) {
  std::unique_ptr<CallerAuth> auth(
      new CallerAuth(std::move(tokens_file), std::move(identity_hosts_file),
                     std::move(identity_hosts)));
  absl::StatusOr<std::shared_ptr<const Snapshot>> loaded =
      auth->Load(auth->static_hosts_);
  if (!loaded.ok()) return loaded.status();
  auth->snapshot_ = *std::move(loaded);
  return auth;
}

absl::StatusOr<std::shared_ptr<const CallerAuth::Snapshot>> CallerAuth::Load(
    const std::map<std::string, IdentityEntry>& static_hosts) const {
  auto snapshot = std::make_shared<Snapshot>();
  for (const auto& [identity, entry] : static_hosts) {
    const std::string where =
        absl::StrCat("--config: identity_hosts[\"", identity, "\"]");
    absl::Status valid = ValidateIdentity(identity);
    absl::StatusOr<std::shared_ptr<const CallerRules>> rules =
        valid.ok() ? MakeCallerRules(absl::StrJoin(entry.hosts, ","),
                                     entry.ports, where, entry.max_inflight)
                   : valid;
    if (!rules.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", rules.status().message()));
    }
    snapshot->rules[identity] = *std::move(rules);
  }
  if (!tokens_file_.empty()) {
    absl::StatusOr<std::string> text =
        ReadFlagFile(tokens_file_, "auth_tokens_file");
    if (!text.ok()) return text.status();
    absl::Status status = ForEachEntry(
        *text, tokens_file_, [&](const std::vector<absl::string_view>& f, int) {
          if (f.size() != 2) {
            return absl::InvalidArgumentError(
                "expected \"TOKEN IDENTITY\"");  // never echo the token
          }
          if (f[0].size() < 16) {
            return absl::InvalidArgumentError(
                "token shorter than 16 characters");
          }
          absl::Status valid = ValidateIdentity(f[1]);
          if (!valid.ok()) return valid;
          Snapshot::Token token;
          Sha256(f[0], token.digest);
          token.identity = std::string(f[1]);
          snapshot->tokens.push_back(std::move(token));
          return absl::OkStatus();
        });
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--auth_tokens_file: ", status.message()));
    }
    if (snapshot->tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--auth_tokens_file: ", tokens_file_,
                       ": no tokens; every call would be refused"));
    }
  }
  if (!identity_hosts_file_.empty()) {
    absl::StatusOr<std::string> text =
        ReadFlagFile(identity_hosts_file_, "identity_hosts_file");
    if (!text.ok()) return text.status();
    absl::StatusOr<IdentityRuleMap> rules =
        ParseIdentityFile(*text, identity_hosts_file_);
    if (!rules.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--identity_hosts_file: ", rules.status().message()));
    }
    for (auto& [identity, r] : *rules) snapshot->rules[identity] = r;
  }
  return std::shared_ptr<const Snapshot>(std::move(snapshot));
}

absl::Status CallerAuth::Reload() {
  std::map<std::string, IdentityEntry> hosts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hosts = static_hosts_;
  }
  absl::StatusOr<Prepared> prepared = Prepare(std::move(hosts));
  if (!prepared.ok()) return prepared.status();
  Commit(*std::move(prepared));
  return absl::OkStatus();
}

absl::StatusOr<CallerAuth::Prepared> CallerAuth::Prepare(
    std::map<std::string, IdentityEntry> identity_hosts) const {
  absl::StatusOr<std::shared_ptr<const Snapshot>> loaded = Load(identity_hosts);
  if (!loaded.ok()) return loaded.status();
  return Prepared{*std::move(loaded), std::move(identity_hosts)};
}

void CallerAuth::Commit(Prepared prepared) {
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_ = std::move(prepared.snapshot);
  static_hosts_ = std::move(prepared.identity_hosts);
}

std::shared_ptr<const CallerAuth::Snapshot> CallerAuth::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

absl::StatusOr<Caller> CallerAuth::Authenticate(
    const grpc::ServerContextBase& context) const {
  std::shared_ptr<const Snapshot> snap = snapshot();
  Caller caller{"anonymous", nullptr};

  // A client certificate verified by mutual TLS (the listener requires and
  // verifies one when --client_ca is set). Its PEM, not IsPeerAuthenticated():
  // gRPC calls a certificate without a common name or DNS SAN unauthenticated.
  std::string front_pem;
  std::vector<grpc::string_ref> pem;
  if (peer_certificates_) {
    front_pem = peer_certificates_(context.peer());
    if (!front_pem.empty()) {
      pem.emplace_back(front_pem);
    } else if (peer_certificate_required_) {
      return absl::UnauthenticatedError(
          "no verified client certificate: mutual TLS (--client_ca) is "
          "required");
    }
  } else if (std::shared_ptr<const grpc::AuthContext> auth =
                 context.auth_context()) {
    pem = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  }
  if (!pem.empty()) {
    // A caller's calls arrive on its one connection: the certificate of
    // the previous call on this thread is almost always the same one, and
    // is not parsed again.
    thread_local std::string last_pem;
    thread_local absl::StatusOr<std::string> last_identity;
    const absl::string_view this_pem(pem.front().data(), pem.front().size());
    if (this_pem != last_pem) {
      last_identity = CertificateIdentity(this_pem);
      last_pem = std::string(this_pem);
    }
    if (!last_identity.ok()) return last_identity.status();
    caller.identity = *last_identity;
  }

  if (!tokens_file_.empty()) {
    const auto& metadata = context.client_metadata();
    auto it = metadata.find("authorization");
    if (it == metadata.end()) {
      return absl::UnauthenticatedError(
          "missing bearer token: send metadata \"authorization: Bearer "
          "<token>\"");
    }
    absl::string_view value(it->second.data(), it->second.size());
    if (!absl::ConsumePrefix(&value, "Bearer ") &&
        !absl::ConsumePrefix(&value, "bearer ")) {
      return absl::UnauthenticatedError(
          "authorization metadata is not \"Bearer <token>\"");
    }
    unsigned char digest[32];
    Sha256(absl::StripAsciiWhitespace(value), digest);
    // Every entry is compared, whatever matches, so timing tells nothing.
    const std::string* identity = nullptr;
    for (const Snapshot::Token& token : snap->tokens) {
      if (CRYPTO_memcmp(digest, token.digest, sizeof(digest)) == 0) {
        identity = &token.identity;
      }
    }
    if (identity == nullptr)
      return absl::UnauthenticatedError("invalid bearer token");
    caller.identity = *identity;
  }

  auto rules = snap->rules.find(caller.identity);
  if (rules != snap->rules.end()) caller.rules = rules->second;
  return caller;
}

std::shared_ptr<const CallerRules> CallerAuth::RulesOf(
    const std::string& identity) const {
  std::shared_ptr<const Snapshot> snap = snapshot();
  auto rules = snap->rules.find(identity);
  return rules == snap->rules.end() ? nullptr : rules->second;
}

absl::StatusOr<std::string> CertificateIdentity(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) {
    return absl::UnauthenticatedError("client certificate cannot be read");
  }
  absl::Cleanup free_cert = [cert] { X509_free(cert); };
  std::vector<std::string> spiffe_ids;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    absl::string_view text(reinterpret_cast<const char*>(uri->data),
                           static_cast<size_t>(uri->length));
    if (absl::StartsWithIgnoreCase(text, "spiffe:")) {
      spiffe_ids.emplace_back(text);
    }
  }
  GENERAL_NAMES_free(names);
  if (spiffe_ids.size() > 1) {
    return absl::UnauthenticatedError(absl::StrCat(
        "client certificate has ", spiffe_ids.size(),
        " SPIFFE IDs in its URI SANs; a workload certificate has one"));
  }
  if (spiffe_ids.size() == 1) {
    absl::Status valid = ValidateIdentity(spiffe_ids[0]);
    if (!valid.ok()) {
      return absl::UnauthenticatedError(
          absl::StrCat("client certificate: ", valid.message()));
    }
    return spiffe_ids[0];
  }
  X509_NAME* subject = X509_get_subject_name(cert);
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  unsigned char* utf8 = nullptr;
  const int length =
      index < 0
          ? -1
          : ASN1_STRING_to_UTF8(
                &utf8,
                X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
  std::string cn(length > 0 ? reinterpret_cast<char*>(utf8) : "",
                 length > 0 ? static_cast<size_t>(length) : 0);
  OPENSSL_free(utf8);
  if (cn.empty()) {
    return absl::UnauthenticatedError(
        "client certificate has neither a SPIFFE ID (URI SAN) nor a common "
        "name; it names no identity");
  }
  for (unsigned char c : cn) {
    if (c < 0x20 || c == 0x7f) {
      return absl::UnauthenticatedError(
          "client certificate's common name has a control character");
    }
  }
  return cn;
}

}  // namespace egress
