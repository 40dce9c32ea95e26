// FakeClock: a Clock that moves only when a test advances it.
//
// Thread safety: Now and Advance may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>

#include "service/clock.h"

namespace egress {

class FakeClock final : public Clock {
 public:
  MonoTime Now() const override { return now_.load(); }
  void Advance(std::chrono::nanoseconds d) { now_.store(now_.load() + d); }

 private:
  // Starts far from the epoch so that "now - long ago" never underflows.
  std::atomic<MonoTime> now_{MonoTime() + std::chrono::hours(1000)};
};

}  // namespace egress
