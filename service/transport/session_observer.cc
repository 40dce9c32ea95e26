#include "service/transport/session_observer.h"

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
    case DropReason::kUpstreamClosed:
      return "upstream_closed";
  }
  return "unknown";
}

const char* LeaseSourceName(LeaseSource source) {
  switch (source) {
    case LeaseSource::kLocal:
      return "local";
    case LeaseSource::kShared:
      return "shared";
    case LeaseSource::kNew:
      return "new";
  }
  return "unknown";
}

}  // namespace egress
