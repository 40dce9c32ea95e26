// Clock: the one source of time for the service. Now() is monotonic and
// measures and expires things (deadlines, idle sessions, queued calls);
// WallNow() is the calendar time, only for comparing with gRPC's deadlines,
// which are given as system_clock times. Production code uses RealClock;
// tests drive a FakeClock (tests/fakes/fake_clock.h) instead of sleeping.
// Code that must wait (a condition variable, poll) waits for a duration it
// computed from Now(), never for a time read elsewhere.
//
// Thread safety: implementations must be safe to call from any thread.
#pragma once

#include <chrono>

namespace egress {

using MonoTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

// A duration in seconds, for messages and histograms.
inline double Seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime Now() const = 0;
  virtual WallTime WallNow() const = 0;
};

class RealClock final : public Clock {
 public:
  MonoTime Now() const override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() const override { return std::chrono::system_clock::now(); }

  // A process-wide instance; never destroyed.
  static const Clock& Get() {
    static const RealClock* const clock = new RealClock();
    return *clock;
  }
};

}  // namespace egress
