// ConnectWatchdog: aborts connects and TLS handshakes that outlive their
// exchange's deadline.
//
// httplib bounds each step of a connect and a handshake, and each wait
// restarts when a byte arrives, so an upstream that drips its handshake could
// hold a worker far past the deadline; UpstreamStream enforces the deadline
// only once the connection is up. Only new connections are watched, so a
// reused one costs nothing here. One process-wide thread waits for the
// earliest deadline.
//
// Usage:
//   uint64_t id = ConnectWatchdog::Get().Watch(&target, deadline);
//   ... connect ...
//   ConnectWatchdog::Get().Unwatch(id, deadline);
//
// Thread safety: thread-safe. Unwatch returns only when the entry can no
// longer be acted on, so a target may be destroyed right after.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

#include "service/base/clock.h"

namespace egress {

class ConnectWatchdog {
 public:
  // What the watchdog aborts when a deadline passes.
  class Target {
   public:
    // Called on the watchdog's thread, under its lock: must not block.
    virtual void AbortAtDeadline() = 0;

   protected:
    ~Target() = default;
  };

  static ConnectWatchdog& Get();

  // `deadline` is in real time (RealClock): the watchdog waits for it.
  uint64_t Watch(Target* target, MonoTime deadline);
  void Unwatch(uint64_t id, MonoTime deadline);

 private:
  ConnectWatchdog();
  void Run();

  std::mutex mu_;
  std::condition_variable wake_;
  uint64_t last_id_ = 0;                                      // guarded by mu_
  std::map<std::pair<MonoTime, uint64_t>, Target*> entries_;  // guarded by mu_
};

}  // namespace egress
