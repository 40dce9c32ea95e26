#include "service/api/status_mapping.h"

#include <string>

#include "absl/strings/match.h"
#include "service/base/error_details.h"
#include "third_party/googleapis/google/rpc/error_details.pb.h"
#include "third_party/googleapis/google/rpc/status.pb.h"

namespace egress {
namespace {

constexpr char kGoogleRpcUrl[] = "type.googleapis.com/google.rpc.";

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::Status only holds codes 1..16 (others become kUnknown), and their
  // numbers are gRPC's.
  const auto code = static_cast<grpc::StatusCode>(status.code());
  google::rpc::Status details;
  details.set_code(code);
  details.set_message(std::string(status.message()));
  // The ErrorInfo first: every error has one, from its code when the place
  // that made it named no reason.
  const absl::Status reasoned =
      ReasonOf(status).has_value()
          ? status
          : WithReason(status, DefaultReason(status.code()));
  reasoned.ForEachPayload(
      [&details](absl::string_view url, const absl::Cord& value) {
        if (!absl::StartsWith(url, kGoogleRpcUrl)) return;  // internal payloads
        google::protobuf::Any* any = details.add_details();
        any->set_type_url(std::string(url));
        any->set_value(std::string(value));
      });
  // ErrorInfo to the front.
  for (int i = 1; i < details.details_size(); ++i) {
    if (absl::EndsWith(details.details(i).type_url(), ".ErrorInfo")) {
      details.mutable_details()->SwapElements(0, i);
    }
  }
  return grpc::Status(code, std::string(status.message()),
                      details.SerializeAsString());
}

}  // namespace egress
