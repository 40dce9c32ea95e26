#include "service/caller_auth.h"

#include <grpcpp/security/auth_context.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace egress {
namespace {

void Sha256(absl::string_view data, unsigned char out[32]) {
  unsigned int length = 32;
  EVP_Digest(data.data(), data.size(), out, &length, EVP_sha256(), nullptr);
}

// Calls `line_fn(number, fields)` for each non-empty, non-comment line of the
// file that `flag` names; errors name the flag, the file and the line.
template <typename F>
absl::Status ForEachLine(const char* flag, const std::string& path, F line_fn) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read ", path));
  }
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = line;
    text = text.substr(0, text.find('#'));
    text = absl::StripAsciiWhitespace(text);
    if (text.empty()) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    absl::Status status = line_fn(number, fields);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": ", path, ":", number, ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CallerAuth>> CallerAuth::Create(
    std::string tokens_file, std::string identity_hosts_file,
    std::map<std::string, std::vector<std::string>> identity_hosts) {
  std::unique_ptr<CallerAuth> auth(
      new CallerAuth(std::move(tokens_file), std::move(identity_hosts_file),
                     std::move(identity_hosts)));
  absl::StatusOr<std::shared_ptr<const Snapshot>> loaded = auth->Load();
  if (!loaded.ok()) return loaded.status();
  auth->snapshot_ = *std::move(loaded);
  return auth;
}

absl::StatusOr<std::shared_ptr<const CallerAuth::Snapshot>> CallerAuth::Load()
    const {
  auto snapshot = std::make_shared<Snapshot>();
  for (const auto& [identity, hosts] : static_hosts_) {
    auto list = std::make_shared<std::vector<std::string>>();
    for (const std::string& h : hosts)
      list->push_back(absl::AsciiStrToLower(h));
    snapshot->hosts[identity] = std::move(list);
  }
  if (!tokens_file_.empty()) {
    absl::Status status = ForEachLine(
        "auth_tokens_file", tokens_file_,
        [&](int, const std::vector<absl::string_view>& f) {
          if (f.size() != 2) {
            return absl::InvalidArgumentError(
                "expected \"TOKEN IDENTITY\"");  // never echo the token
          }
          if (f[0].size() < 16) {
            return absl::InvalidArgumentError(
                "token shorter than 16 characters");
          }
          Snapshot::Token token;
          Sha256(f[0], token.digest);
          token.identity = std::string(f[1]);
          snapshot->tokens.push_back(std::move(token));
          return absl::OkStatus();
        });
    if (!status.ok()) return status;
    if (snapshot->tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--auth_tokens_file: ", tokens_file_,
                       ": no tokens; every call would be refused"));
    }
  }
  if (!identity_hosts_file_.empty()) {
    absl::Status status =
        ForEachLine("identity_hosts_file", identity_hosts_file_,
                    [&](int, const std::vector<absl::string_view>& f) {
                      if (f.size() != 2) {
                        return absl::InvalidArgumentError(
                            "expected \"IDENTITY host[,host...]\"");
                      }
                      auto hosts = std::make_shared<std::vector<std::string>>();
                      for (absl::string_view h :
                           absl::StrSplit(f[1], ',', absl::SkipEmpty())) {
                        hosts->push_back(absl::AsciiStrToLower(h));
                      }
                      snapshot->hosts[std::string(f[0])] = std::move(hosts);
                      return absl::OkStatus();
                    });
    if (!status.ok()) return status;
  }
  return std::shared_ptr<const Snapshot>(std::move(snapshot));
}

absl::Status CallerAuth::Reload() {
  absl::StatusOr<std::shared_ptr<const Snapshot>> loaded = Load();
  if (!loaded.ok()) return loaded.status();
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_ = *std::move(loaded);
  return absl::OkStatus();
}

std::shared_ptr<const CallerAuth::Snapshot> CallerAuth::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

absl::StatusOr<Caller> CallerAuth::Authenticate(
    const grpc::CallbackServerContext& context) const {
  std::shared_ptr<const Snapshot> snap = snapshot();
  Caller caller{"anonymous", nullptr};

  // A client certificate verified by mutual TLS.
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    for (const grpc::string_ref& cn :
         auth->FindPropertyValues("x509_common_name")) {
      caller.identity = std::string(cn.data(), cn.size());
      break;
    }
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

  auto hosts = snap->hosts.find(caller.identity);
  if (hosts != snap->hosts.end()) caller.allowed_hosts = hosts->second;
  return caller;
}

}  // namespace egress
