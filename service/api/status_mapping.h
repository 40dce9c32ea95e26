// Status mapping: the one place where the service's internal absl::Status
// becomes the grpc::Status a caller sees (the codes and when each is used:
// docs/errors.md).
//
// Internals pick the most specific absl code where the failure is found
// (INVALID_ARGUMENT for bad input, UNAVAILABLE for a refused connect, ...); the
// codes and their numbers are the same in both libraries, so the mapping keeps
// the code and the message.
//
// Thread safety: pure functions.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace egress {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace egress
