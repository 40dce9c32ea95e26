#include "client/egress_client.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/egress/v1/request_forms.h"
#include "third_party/googleapis/google/rpc/error_details.pb.h"
#include "third_party/googleapis/google/rpc/status.pb.h"

namespace egress {
namespace {

// Where FromGrpc keeps the google.rpc.Status the service sent.
constexpr char kStatusUrl[] = "type.googleapis.com/google.rpc.Status";

// A header's value: its exact bytes, whichever field carried them.
std::string HeaderValue(const egress::v1::Header& header) {
  return header.raw_value().empty() ? header.value() : header.raw_value();
}

}  // namespace

std::string Response::Header(absl::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(n, name)) return v;
  }
  return "";
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()),
                   status.error_message());
  if (!status.error_details().empty()) {
    out.SetPayload(kStatusUrl, absl::Cord(status.error_details()));
  }
  return out;
}

std::string StatusDetailsOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kStatusUrl);
  return payload ? std::string(*payload) : std::string();
}

ErrorDetails ErrorDetailsOf(const absl::Status& status) {
  ErrorDetails out;
  google::rpc::Status details;
  if (!details.ParseFromString(StatusDetailsOf(status))) return out;
  for (const google::protobuf::Any& any : details.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::RetryInfo retry;
    google::rpc::BadRequest bad;
    if (any.UnpackTo(&info)) {
      out.reason = info.reason();
      out.domain = info.domain();
      out.metadata.insert(info.metadata().begin(), info.metadata().end());
    } else if (any.UnpackTo(&retry)) {
      out.retry_delay = std::chrono::milliseconds(
          google::protobuf::util::TimeUtil::DurationToMilliseconds(
              retry.retry_delay()));
    } else if (any.UnpackTo(&bad)) {
      for (const auto& v : bad.field_violations()) {
        out.field_violations.emplace_back(v.field(), v.description());
      }
    }
  }
  return out;
}

EgressClient::EgressClient(const std::string& target, ClientOptions options)
    : options_(std::move(options)) {
  grpc::ChannelArguments args;
  // Responses can be as large as the service's --max_response_bytes.
  args.SetMaxReceiveMessageSize(-1);
  if (!options_.load_balancing.empty()) {
    args.SetLoadBalancingPolicyName(options_.load_balancing);
  }
  if (!options_.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options_.tls_server_name);
  }
  channel_ = grpc::CreateCustomChannel(target,
                                       options_.credentials
                                           ? options_.credentials
                                           : grpc::InsecureChannelCredentials(),
                                       args);
  stub_ = egress::v1::EgressService::NewStub(channel_);
}

egress::v1::DoRequest EgressClient::ToProto(const Request& request) {
  egress::v1::DoRequest proto;
  proto.set_method(request.method);
  proto.set_url(request.url);
  for (const auto& [name, value] : request.headers) {
    egress::v1::Header* h = proto.add_headers();
    h->set_name(name);
    h->set_value(value);
  }
  proto.set_body(request.body);
  if (request.timeout.count() > 0) {
    *proto.mutable_timeout() =
        google::protobuf::util::TimeUtil::MillisecondsToDuration(
            request.timeout.count());
  }
  if (request.retry_attempts > 1) {
    proto.mutable_retry()->set_max_attempts(request.retry_attempts);
    if (request.retry_max_wait.count() > 0) {
      *proto.mutable_retry()->mutable_max_wait() =
          google::protobuf::util::TimeUtil::MillisecondsToDuration(
              request.retry_max_wait.count());
    }
  }
  return proto;
}

void EgressClient::Prepare(grpc::ClientContext& context, const Request& request,
                           std::chrono::milliseconds fallback) const {
  const std::chrono::milliseconds deadline =
      request.deadline.count() > 0 ? request.deadline : fallback;
  if (deadline.count() > 0) {
    context.set_deadline(std::chrono::system_clock::now() + deadline);
  }
  if (!options_.bearer_token.empty()) {
    context.AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
}

absl::StatusOr<Response> EgressClient::Do(const Request& request) const {
  grpc::ClientContext context;
  Prepare(context, request, options_.default_deadline);
  egress::v1::DoResponse proto;
  grpc::Status status = stub_->Do(&context, ToProto(request), &proto);
  if (!status.ok()) return FromGrpc(status);
  Response response;
  response.status = proto.status();
  for (const auto& h : proto.headers())
    response.headers.emplace_back(h.name(), HeaderValue(h));
  response.body = std::move(*proto.mutable_body());
  response.timing = proto.timing();
  return response;
}

absl::StatusOr<Response> EgressClient::Get(
    const std::string& url,
    std::vector<std::pair<std::string, std::string>> headers) const {
  Request request;
  request.url = url;
  request.headers = std::move(headers);
  return Do(request);
}

absl::StatusOr<Response> EgressClient::Post(
    const std::string& url, std::string body,
    std::vector<std::pair<std::string, std::string>> headers) const {
  Request request;
  request.method = "POST";
  request.url = url;
  request.body = std::move(body);
  request.headers = std::move(headers);
  return Do(request);
}

absl::Status EgressClient::Stream(
    const Request& request,
    const std::function<void(const Response& head)>& on_head,
    const std::function<bool(absl::string_view bytes)>& on_body) const {
  grpc::ClientContext context;
  Prepare(context, request, std::chrono::milliseconds(0));
  auto reader =
      stub_->DoStream(&context, egress::v1::ForStream(ToProto(request)));
  egress::v1::DoStreamResponse chunk;
  bool stopped = false;
  while (reader->Read(&chunk)) {
    if (chunk.has_head()) {
      Response head;
      head.status = chunk.head().status();
      for (const auto& h : chunk.head().headers()) {
        head.headers.emplace_back(h.name(), HeaderValue(h));
      }
      head.timing = chunk.head().timing();
      if (on_head) on_head(head);
    } else if (on_body && !on_body(chunk.body())) {
      stopped = true;
      context.TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (stopped) return absl::CancelledError("stopped by the caller");
  return FromGrpc(status);
}

}  // namespace egress
