// CountingObserver: a SessionObserver that counts what it is told, for tests.
//
// Thread safety: thread-safe (atomic counters).
#pragma once

#include <atomic>

#include "service/session_observer.h"

namespace egress {

class CountingObserver final : public SessionObserver {
 public:
  void OnSessionCreated() override { ++created; }
  void OnSessionDropped(DropReason reason) override {
    ++dropped[static_cast<int>(reason)];
  }
  void OnConnectionOpened(bool tls) override {
    ++opened;
    if (tls) ++tls_handshakes;
  }
  void OnConnectionReused() override { ++reused; }
  void OnStaleRetry() override { ++stale_retries; }

  int Dropped(DropReason reason) const {
    return dropped[static_cast<int>(reason)].load();
  }

  std::atomic<int> created{0};
  std::atomic<int> opened{0};
  std::atomic<int> tls_handshakes{0};
  std::atomic<int> reused{0};
  std::atomic<int> stale_retries{0};
  std::atomic<int> dropped[kDropReasonCount] = {};
};

}  // namespace egress
