#include "service/status_mapping.h"

#include <string>

namespace egress {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::Status only holds codes 1..16 (others become kUnknown), and their
  // numbers are gRPC's.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

}  // namespace egress
