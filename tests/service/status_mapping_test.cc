// Status mapping: internal absl codes reach the caller unchanged, with
// messages.
#include "service/status_mapping.h"

#include "gtest/gtest.h"

namespace egress {
namespace {

TEST(StatusMappingTest, KeepsCodeAndMessageForEveryMappedSituation) {
  const std::pair<absl::Status, grpc::StatusCode> table[] = {
      {absl::InvalidArgumentError("url: is empty"),
       grpc::StatusCode::INVALID_ARGUMENT},
      {absl::PermissionDeniedError("refused by policy"),
       grpc::StatusCode::PERMISSION_DENIED},
      {absl::UnauthenticatedError("no token"),
       grpc::StatusCode::UNAUTHENTICATED},
      {absl::UnavailableError("connect refused"),
       grpc::StatusCode::UNAVAILABLE},
      {absl::DeadlineExceededError("timed out"),
       grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::ResourceExhaustedError("queue full"),
       grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::CancelledError("cancelled"), grpc::StatusCode::CANCELLED},
  };
  for (const auto& [in, code] : table) {
    grpc::Status out = ToGrpcStatus(in);
    EXPECT_EQ(out.error_code(), code) << in;
    EXPECT_EQ(out.error_message(), in.message());
  }
}

TEST(StatusMappingTest, OkIsOk) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

// The `outcome` label of egress_requests_total and the access log use
// absl::StatusCodeToString: it must give gRPC's names for gRPC's numbers.
TEST(StatusMappingTest, OutcomeNamesAreTheGrpcNames) {
  EXPECT_EQ(absl::StatusCodeToString(absl::StatusCode::kOk), "OK");
  EXPECT_EQ(absl::StatusCodeToString(static_cast<absl::StatusCode>(
                grpc::StatusCode::RESOURCE_EXHAUSTED)),
            "RESOURCE_EXHAUSTED");
  EXPECT_EQ(absl::StatusCodeToString(
                static_cast<absl::StatusCode>(grpc::StatusCode::UNAVAILABLE)),
            "UNAVAILABLE");
  EXPECT_EQ(absl::StatusCodeToString(static_cast<absl::StatusCode>(
                grpc::StatusCode::UNAUTHENTICATED)),
            "UNAUTHENTICATED");
}

}  // namespace
}  // namespace egress
