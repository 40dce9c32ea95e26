// Clock: the source of monotonic time for units that expire things (idle
// sessions, queued calls). Production code uses RealClock; tests drive a
// FakeClock (tests/fakes/fake_clock.h) instead of sleeping.
//
// Thread safety: implementations must be safe to call from any thread.
#pragma once

#include <chrono>

namespace egress {

using MonoTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime Now() const = 0;
};

class RealClock final : public Clock {
 public:
  MonoTime Now() const override { return std::chrono::steady_clock::now(); }

  // A process-wide instance; never destroyed.
  static const Clock& Get() {
    static const RealClock* const clock = new RealClock();
    return *clock;
  }
};

}  // namespace egress
