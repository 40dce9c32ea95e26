#include "service/session_observer.h"

namespace egress {

const char* DropReasonName(DropReason reason) {
  switch (reason) {
    case DropReason::kErrors:
      return "errors";
    case DropReason::kIdle:
      return "idle";
    case DropReason::kMaxRequests:
      return "max_requests";
    case DropReason::kEvicted:
      return "evicted";
    case DropReason::kShutdown:
      return "shutdown";
    case DropReason::kRetired:
      return "retired";
  }
  return "unknown";
}

}  // namespace egress
