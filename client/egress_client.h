// EgressClient: a small C++ client for the egress service.
//
// One channel is created when the client is constructed and reused by every
// call; calls are independent, so one client may be shared by many threads.
// Errors keep the service's gRPC code and message in an absl::Status
// (INVALID_ARGUMENT, PERMISSION_DENIED, UNAVAILABLE, ...), and
// ErrorDetailsOf(status) gives the stable reason (DESTINATION_DENIED,
// CONNECT_REFUSED, ...) and its metadata; any HTTP status the upstream
// answers with is a successful Response.
//
// Usage:
//   egress::EgressClient client("dns:///egress.platform:50051");  // Kubernetes
//   egress::EgressClient local("127.0.0.1:50051");
//   absl::StatusOr<egress::Response> r =
//   client.Get("https://api.example.com/x"); if (r.ok() && r->status == 200)
//   Use(r->body);
//
//   client.Stream(request, [](const egress::Response& head) { ... },
//                 [](absl::string_view bytes) { Write(bytes); return true; });
//
// Thread safety: thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/egress/v1/egress.grpc.pb.h"

namespace egress {

struct ClientOptions {
  // nullptr: plaintext. For TLS: grpc::SslCredentials({root_pem, key, cert}).
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Sent as "authorization: Bearer <token>" with every call when not empty.
  std::string bearer_token;
  // How calls spread over the addresses a "dns:///" target resolves to. gRPC
  // keeps one HTTP/2 connection per address, so "round_robin" is what spreads
  // load over a headless Kubernetes Service's pods.
  std::string load_balancing = "round_robin";
  // Deadline of a Do call that gives none. Streams have no default deadline:
  // they last as long as the upstream sends (LLM event streams run for
  // minutes), and the service's --stream_idle_timeout ends a silent one.
  std::chrono::milliseconds default_deadline = std::chrono::seconds(30);
  // Name checked in the server's certificate, when it differs from the target.
  std::string tls_server_name;
};

struct Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The upstream timeout (0: the call's deadline bounds it).
  std::chrono::milliseconds timeout{0};
  // The call's deadline (0: ClientOptions::default_deadline for Do, none for
  // Stream).
  std::chrono::milliseconds deadline{0};
  // > 1: the service retries an answer that asks for it (429 or 503 with
  // Retry-After) up to this many attempts in all, waiting at most
  // retry_max_wait (0: what the deadline allows).
  int retry_attempts = 0;
  std::chrono::milliseconds retry_max_wait{0};
};

struct Response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names may repeat
  std::string body;  // empty for Stream's head
  egress::v1::Timing timing;

  // The first value of header `name` (case-insensitive), or "".
  std::string Header(absl::string_view name) const;
};

class EgressClient {
 public:
  explicit EgressClient(const std::string& target, ClientOptions options = {});

  absl::StatusOr<Response> Do(const Request& request) const;
  absl::StatusOr<Response> Get(
      const std::string& url,
      std::vector<std::pair<std::string, std::string>> headers = {}) const;
  absl::StatusOr<Response> Post(
      const std::string& url, std::string body,
      std::vector<std::pair<std::string, std::string>> headers = {}) const;

  // DoStream: `on_head` gets the status and headers, then `on_body` each piece
  // of the body as it arrives; returning false from it cancels the call.
  // Returns OK only when the whole body arrived.
  absl::Status Stream(
      const Request& request,
      const std::function<void(const Response& head)>& on_head,
      const std::function<bool(absl::string_view bytes)>& on_body) const;

  egress::v1::EgressService::Stub& stub() const { return *stub_; }

 private:
  // Sets the deadline (`fallback` when the request gives none; zero: none)
  // and the credentials.
  void Prepare(grpc::ClientContext& context, const Request& request,
               std::chrono::milliseconds fallback) const;
  static egress::v1::DoRequest ToProto(const Request& request);

  const ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<egress::v1::EgressService::Stub> stub_;
};

// What an error says for programs: the google.rpc details egressd sends with
// every error (docs/errors.md lists the reasons).
struct ErrorDetails {
  std::string reason;  // "DESTINATION_DENIED", ...; empty when none came
  std::string domain;  // "egress.local"
  std::map<std::string, std::string> metadata;  // origin, address, limit, ...
  // RetryInfo: how long to wait before retrying, where waiting helps.
  std::optional<std::chrono::milliseconds> retry_delay;
  // BadRequest: (field, description) of each invalid field.
  std::vector<std::pair<std::string, std::string>> field_violations;
};

// The absl::Status of a gRPC status, code and message kept, and the details
// the service sent kept for ErrorDetailsOf.
absl::Status FromGrpc(const grpc::Status& status);

// The details of an error from EgressClient (empty for any other status).
ErrorDetails ErrorDetailsOf(const absl::Status& status);

// The google.rpc.Status of an error from EgressClient, serialized; empty for
// any other status.
std::string StatusDetailsOf(const absl::Status& status);

}  // namespace egress
