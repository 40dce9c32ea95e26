// InflightLimits: how many calls may be in flight at once to one origin
// (--max_inflight_per_origin, like the seed's 100 per host) and from one
// caller identity (--max_inflight_per_caller, or the identity's own
// max_inflight=), each with its own queue.
//
// A call over its origin's or its caller's limit waits in that origin's or
// caller's queue, holding no worker, until a slot frees or its deadline
// passes; calls to other origins and from other callers are never delayed by
// it. A full queue (--max_queue waiting for one origin or caller) refuses at
// once. Every refusal is RESOURCE_EXHAUSTED naming the limit.
//
// Usage:
//   limits.Acquire(origin, caller, caller_limit, deadline,
//                  [](absl::StatusOr<InflightSlot> slot) {
//                    if (!slot.ok()) { answer(slot.status()); return; }
//                    run the call, keeping *slot until it ends
//                  });
// `done` runs exactly once: at once (a slot is free, or the queue is full),
// or later on the thread that frees a slot, expires the wait (the expiry
// thread) or cancels it (Cancel).
//
// A call whose rate limit let it go only at a later time (rate_limits.h)
// asks with `not_before`: it waits until then, holding no worker and no slot,
// then asks for its slots as any call does (on the expiry thread).
//
// Thread safety: thread-safe. `done` runs without the lock held.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "service/base/clock.h"
#include "service/base/deadline.h"
#include "service/base/defaults.h"

namespace egress {

class InflightLimits;

// One call's place among its origin's and its caller's calls in flight; given
// back when destroyed or Release()d. Movable.
class InflightSlot {
 public:
  InflightSlot() = default;
  InflightSlot(InflightSlot&& other) noexcept { *this = std::move(other); }
  InflightSlot& operator=(InflightSlot&& other) noexcept;
  InflightSlot(const InflightSlot&) = delete;
  InflightSlot& operator=(const InflightSlot&) = delete;
  ~InflightSlot() { Release(); }

  // Gives the slot back (may start a waiting call, on this thread).
  void Release();

 private:
  friend class InflightLimits;
  InflightSlot(InflightLimits* limits, std::string origin, std::string caller)
      : limits_(limits),
        origin_(std::move(origin)),
        caller_(std::move(caller)) {}

  InflightLimits* limits_ = nullptr;
  std::string origin_;
  std::string caller_;
};

struct InflightLimitsOptions {
  size_t max_per_origin = defaults::kMaxInflightPerOrigin;  // 0: no limit
  size_t max_per_caller = defaults::kMaxInflightPerCaller;  // 0: no limit
  size_t max_waiting = defaults::kMaxQueue;  // per origin and per caller
  // Answers waits whose deadline passed from a thread of its own; tests with a
  // fake clock call ExpireWaiting() instead.
  bool expiry_thread = true;
  // Called under the lock with the calls waiting for origins and for callers.
  std::function<void(size_t origins, size_t callers)> on_waiting;
};

class InflightLimits {
 public:
  using Done = absl::AnyInvocable<void(absl::StatusOr<InflightSlot>)>;

  // REQUIRES: `clock` outlives this.
  InflightLimits(const InflightLimitsOptions& options, const Clock& clock);
  // Refuses every waiting call (CANCELLED) and stops the expiry thread.
  ~InflightLimits();
  InflightLimits(const InflightLimits&) = delete;
  InflightLimits& operator=(const InflightLimits&) = delete;

  // Asks for a slot of `origin` (Origin::Key()) and of `caller` (an identity;
  // `caller_limit` its limit, 0 for none). When the call has to wait, its id
  // for Cancel is stored in `*waiting_id` (when given) before `done` can run
  // on another thread. Returns that id, or 0 when `done` already ran.
  // `origin_limit`, when given, replaces max_per_origin for `origin` (its
  // origins entry's max_inflight; 0 for none). With `not_before` later than
  // now, the call first waits until then (its id for Cancel stored as
  // above; another when it then waits for a slot). MonoTime{}: none.
  uint64_t Acquire(const std::string& origin, const std::string& caller,
                   size_t caller_limit, const Deadline& deadline, Done done,
                   std::atomic<uint64_t>* waiting_id = nullptr,
                   std::optional<size_t> origin_limit = std::nullopt,
                   MonoTime not_before = MonoTime{});

  // The call `id` gave up (its caller cancelled): `done` gets CANCELLED, if
  // it still waits.
  void Cancel(uint64_t id);

  // Answers every wait whose deadline has passed, and lets the calls whose
  // not_before has come ask for their slots.
  void ExpireWaiting();

  // Calls waiting for their not_before (for tests and metrics).
  size_t delayed() const;

  // Calls in flight to `origin` / from `caller` (for tests and logs).
  size_t InflightOrigin(const std::string& origin) const;
  size_t InflightCaller(const std::string& caller) const;

  size_t max_per_origin() const { return options_.max_per_origin; }
  size_t max_per_caller() const { return options_.max_per_caller; }

 private:
  friend class InflightSlot;
  enum class Queue { kOrigin, kCaller };
  struct Waiter {
    uint64_t id = 0;
    std::string origin;
    std::string caller;
    size_t caller_limit = 0;
    MonoTime deadline = MonoTime::max();
    MonoTime since;
    Queue queue = Queue::kOrigin;
    Done done;
  };
  struct Key {
    size_t inflight = 0;
    std::deque<std::shared_ptr<Waiter>> waiting;
    // An origin's own limit (the last Acquire's origin_limit).
    std::optional<size_t> limit;
  };
  using Ready = std::vector<std::pair<Done, absl::StatusOr<InflightSlot>>>;
  // A call waiting for its not_before: what Acquire needs then.
  struct Delayed {
    uint64_t id = 0;
    std::string origin;
    std::string caller;
    size_t caller_limit = 0;
    Deadline deadline;
    Done done;
    std::atomic<uint64_t>* waiting_id = nullptr;
    std::optional<size_t> origin_limit;
    MonoTime not_before;
  };

  void Release(const std::string& origin, const std::string& caller);
  bool OriginFull(const std::string& origin) const;
  // "--max_inflight_per_origin=N", or the origin's own limit, for messages.
  std::string OriginLimitText(const std::string& origin) const;
  bool CallerFull(const std::string& caller, size_t limit) const;
  // Starts what the freed slots of `origin` and `caller` allow.
  void Admit(const std::string& origin, const std::string& caller,
             Ready& ready);
  // Takes `w` out of the id and expiry indexes (not out of its queue).
  void Forget(const Waiter& w);
  void Enqueue(std::shared_ptr<Waiter> w, Queue queue);
  void Start(const std::shared_ptr<Waiter>& w, Ready& ready);
  // Drops `key` from `map` when nothing is in flight or waiting.
  static void Tidy(std::unordered_map<std::string, Key>& map,
                   const std::string& key);
  void NotifyWaiting();
  void ExpiryLoop();

  const InflightLimitsOptions options_;
  const Clock& clock_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Key> origins_;          // guarded by mu_
  std::unordered_map<std::string, Key> callers_;          // guarded by mu_
  std::map<uint64_t, std::shared_ptr<Waiter>> waiters_;   // guarded by mu_
  std::multimap<MonoTime, uint64_t> expiry_;              // guarded by mu_
  std::map<uint64_t, std::shared_ptr<Delayed>> delayed_;  // guarded by mu_
  std::multimap<MonoTime, uint64_t> not_before_;          // guarded by mu_
  size_t waiting_origins_ = 0;                            // guarded by mu_
  size_t waiting_callers_ = 0;                            // guarded by mu_
  uint64_t next_id_ = 1;                                  // guarded by mu_
  bool stopping_ = false;                                 // guarded by mu_
  std::condition_variable expiry_cv_;
  std::thread expiry_thread_;
};

}  // namespace egress
