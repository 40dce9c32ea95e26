#include "service/transport/connect_watchdog.h"

#include <thread>

namespace egress {

ConnectWatchdog& ConnectWatchdog::Get() {
  static ConnectWatchdog* const watchdog = new ConnectWatchdog();
  return *watchdog;
}

ConnectWatchdog::ConnectWatchdog() {
  std::thread([this] { Run(); }).detach();
}

uint64_t ConnectWatchdog::Watch(Target* target, MonoTime deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = ++last_id_;
  entries_.emplace(std::make_pair(deadline, id), target);
  wake_.notify_one();
  return id;
}

void ConnectWatchdog::Unwatch(uint64_t id, MonoTime deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(std::make_pair(deadline, id));
}

void ConnectWatchdog::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (entries_.empty()) {
      wake_.wait(lock);
      continue;
    }
    auto first = entries_.begin();
    // A copy: the entry may be erased while this thread waits.
    const MonoTime when = first->first.first;
    const MonoTime now = RealClock::Get().Now();
    if (when > now) {
      wake_.wait_for(lock, when - now);
      continue;
    }
    // Under mu_: Unwatch cannot return, nor the target go, meanwhile.
    first->second->AbortAtDeadline();
    entries_.erase(first);
  }
}

}  // namespace egress
