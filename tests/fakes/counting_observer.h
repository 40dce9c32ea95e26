// CountingObserver: a SessionObserver that counts what it is told, for tests.
//
// Thread safety: thread-safe (atomic counters).
#pragma once

#include <atomic>
#include <string>

#include "service/transport/session_observer.h"

namespace egress {

class CountingObserver final : public SessionObserver {
 public:
  void OnSessionCreated() override { ++created; }
  void OnSessionDropped(DropReason reason) override {
    ++dropped[static_cast<int>(reason)];
  }
  void OnPoolChange(const std::string&, int idle_delta,
                    int busy_delta) override {
    idle += idle_delta;
    busy += busy_delta;
  }
  void OnLease(LeaseSource source) override {
    ++leases[static_cast<int>(source)];
  }
  void OnConnectionOpened(const std::string&, bool tls, bool resumed) override {
    ++opened;
    if (tls) ++tls_handshakes;
    if (resumed) ++tls_resumed;
  }
  void OnConnectionReused(const std::string&) override { ++reused; }
  void OnStaleRetry() override { ++stale_retries; }

  int Dropped(DropReason reason) const {
    return dropped[static_cast<int>(reason)].load();
  }
  int Leases(LeaseSource source) const {
    return leases[static_cast<int>(source)].load();
  }

  std::atomic<int> created{0};
  std::atomic<int> opened{0};
  std::atomic<int> tls_handshakes{0};
  std::atomic<int> tls_resumed{0};
  // Sessions idle and busy now (OnPoolChange's sums).
  std::atomic<int> idle{0};
  std::atomic<int> busy{0};
  std::atomic<int> leases[kLeaseSourceCount] = {};
  std::atomic<int> reused{0};
  std::atomic<int> stale_retries{0};
  std::atomic<int> dropped[kDropReasonCount] = {};
};

}  // namespace egress
