// FakeClock: a Clock that moves only when a test advances it.
//
// Thread safety: Now and Advance may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>

#include "service/base/clock.h"

namespace egress {

class FakeClock final : public Clock {
 public:
  MonoTime Now() const override { return now_.load(); }
  // Moves with Now(), from the real time at construction.
  WallTime WallNow() const override {
    return wall_start_ +
           std::chrono::duration_cast<WallTime::duration>(now_.load() - start_);
  }
  void Advance(std::chrono::nanoseconds d) { now_.store(now_.load() + d); }

 private:
  const MonoTime start_ = MonoTime() + std::chrono::hours(1000);
  const WallTime wall_start_ = std::chrono::system_clock::now();
  // Starts far from the epoch so that "now - long ago" never underflows.
  std::atomic<MonoTime> now_{MonoTime() + std::chrono::hours(1000)};
};

}  // namespace egress
