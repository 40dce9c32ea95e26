// WaitUntil: the bounded wait tests use instead of a fixed sleep. It polls
// `done` every few milliseconds until it holds or `limit` has passed, and
// returns whether it holds, so the caller asserts what did not happen.
//
//   ASSERT_TRUE(WaitUntil([&] { return upstream.requests() == 1; }));
//
// Thread safety: `done` is called on the calling thread only.
#pragma once

#include <chrono>
#include <thread>

namespace egress {

template <typename Done>
bool WaitUntil(Done done,
               std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace egress
