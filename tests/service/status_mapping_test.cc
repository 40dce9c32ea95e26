// Status mapping: internal absl codes reach the caller unchanged, with
// messages.
#include "service/api/status_mapping.h"

#include <set>
#include <string>

#include "gtest/gtest.h"
#include "service/base/error_details.h"
#include "third_party/googleapis/google/rpc/error_details.pb.h"
#include "third_party/googleapis/google/rpc/status.pb.h"

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

// The google.rpc.Status a caller decodes from the trailer.
google::rpc::Status DetailsOf(const grpc::Status& status) {
  google::rpc::Status details;
  EXPECT_TRUE(details.ParseFromString(status.error_details()));
  EXPECT_EQ(details.code(), status.error_code());
  EXPECT_EQ(details.message(), status.error_message());
  return details;
}

google::rpc::ErrorInfo InfoOf(const google::rpc::Status& details) {
  google::rpc::ErrorInfo info;
  EXPECT_GE(details.details_size(), 1);
  if (details.details_size() > 0) {
    EXPECT_EQ(details.details(0).type_url(),
              "type.googleapis.com/google.rpc.ErrorInfo");
    EXPECT_TRUE(details.details(0).UnpackTo(&info));
  }
  return info;
}

TEST(StatusMappingTest, EveryErrorCarriesAnErrorInfoFirst) {
  // Without a reason of its own, from the code.
  const google::rpc::ErrorInfo bare =
      InfoOf(DetailsOf(ToGrpcStatus(absl::InternalError("bug"))));
  EXPECT_EQ(bare.reason(), "INTERNAL");
  EXPECT_EQ(bare.domain(), kErrorDomain);
  EXPECT_EQ(
      InfoOf(DetailsOf(ToGrpcStatus(absl::UnavailableError("x")))).reason(),
      "UPSTREAM_FAILED");

  // Its own reason and metadata, after other details; empty values left out.
  absl::Status status = WithRetryDelay(absl::ResourceExhaustedError("waited"),
                                       std::chrono::milliseconds(1500));
  status = WithReason(std::move(status), ErrorReason::kOriginLimit,
                      {{"origin", "http://127.0.0.1:80"}, {"caller", ""}});
  status.SetPayload("egress.policy/reason", absl::Cord("internal"));
  const google::rpc::Status details = DetailsOf(ToGrpcStatus(status));
  ASSERT_EQ(details.details_size(), 2) << "internal payloads stay inside";
  const google::rpc::ErrorInfo info = InfoOf(details);
  EXPECT_EQ(info.reason(), "ORIGIN_LIMIT");
  EXPECT_EQ(info.metadata().at("origin"), "http://127.0.0.1:80");
  EXPECT_EQ(info.metadata().count("caller"), 0u);
  google::rpc::RetryInfo retry;
  ASSERT_TRUE(details.details(1).UnpackTo(&retry));
  EXPECT_EQ(retry.retry_delay().seconds(), 1);
  EXPECT_EQ(retry.retry_delay().nanos(), 500000000);
}

TEST(StatusMappingTest, AnInvalidFieldIsABadRequest) {
  const google::rpc::Status details = DetailsOf(ToGrpcStatus(
      WithFieldViolation(absl::InvalidArgumentError("url: is empty"), "url")));
  EXPECT_EQ(InfoOf(details).reason(), "INVALID_REQUEST");
  google::rpc::BadRequest bad;
  ASSERT_EQ(details.details_size(), 2);
  ASSERT_TRUE(details.details(1).UnpackTo(&bad));
  ASSERT_EQ(bad.field_violations_size(), 1);
  EXPECT_EQ(bad.field_violations(0).field(), "url");
  EXPECT_EQ(bad.field_violations(0).description(), "url: is empty");
}

TEST(StatusMappingTest, ReasonsAreUniqueUpperSnakeCase) {
  std::set<std::string> seen;
  ASSERT_EQ(AllErrorReasons().size(),
            static_cast<size_t>(ErrorReason::kInternal) + 1);
  for (size_t i = 0; i < AllErrorReasons().size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(AllErrorReasons()[i]), i);
  }
  for (ErrorReason reason : AllErrorReasons()) {
    const std::string name = ErrorReasonName(reason);
    EXPECT_TRUE(seen.insert(name).second) << name;
    for (char c : name) {
      EXPECT_TRUE((c >= 'A' && c <= 'Z') || c == '_') << name;
    }
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
