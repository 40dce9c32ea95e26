// SharedRateLimits: the rate limits held across every replica through one
// Redis (--redis), with each replica's local share when Redis cannot be
// reached.
//
// The count is RateLimits' GCRA, kept in Redis: one time per key
// ("<prefix>:rate:<key>", expiring when the key is back to a full burst),
// updated by one Lua script that reads Redis' own clock (so replicas' clocks
// do not matter) and grants up to n calls at once: those that conform now or
// within the caller's wait. A replica takes calls from what it was granted
// (its lease), in order. A busy key's lease (20 calls per second or more on
// this replica) holds what the replica would use in the next kLeaseAhead, at
// most kLeaseAhead's worth of the limit, and is refilled in the background
// when half of it is gone: its calls make no round trip to Redis, and a quiet
// key's call makes one. A granted call not taken within
// kLeaseTtl of its time is dropped (never handed to a later window): the
// fleet goes over the limit by at most the burst plus what is leased ahead
// (each replica at most kLeaseAhead's worth of the limit), and under it by
// what leases drop.
//
// Redis is not a single point of failure: when a round trip fails or takes
// longer than --redis_timeout, the replica holds each limit by its local
// share (limit / the replicas last seen in Redis, or
// --redis_fallback_replicas), counts each such call (on_fallback), logs one
// warning (at most one per kLogInterval), and tries Redis again every
// kProbeInterval in the background; when it answers, within --redis_timeout,
// limits are shared again. No call waits on Redis longer than
// --redis_timeout: a call never connects, only the background thread does.
//
// Replicas are counted by heartbeats: each replica adds itself to the sorted
// set "<prefix>:replicas" every kHeartbeat, and those not seen for
// kReplicaExpiry are dropped from it.
//
// Thread safety: thread-safe; one background thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "service/admission/rate_limits.h"
#include "service/admission/redis_connection.h"
#include "service/base/clock.h"

namespace egress {

// What SharedRateLimits reports (to Metrics); each may be empty.
struct SharedRateObserver {
  std::function<void()> on_fallback;              // a call held by the share
  std::function<void(bool up)> on_redis_state;    // shared / local shares
  std::function<void(bool ahead)> on_round_trip;  // for a call, or ahead
  std::function<void(uint32_t)> on_replicas;      // replicas seen in Redis
};

class SharedRateLimits final : public RateLimiter {
 public:
  static constexpr std::chrono::milliseconds kLeaseAhead{50};
  static constexpr std::chrono::milliseconds kLeaseTtl{250};
  static constexpr std::chrono::milliseconds kProbeInterval{250};
  static constexpr std::chrono::seconds kHeartbeat{1};
  static constexpr std::chrono::seconds kReplicaExpiry{5};
  static constexpr std::chrono::seconds kConnectTimeout{1};
  // At most one warning (and one "shared again") per this, however often a
  // Redis that comes and goes does.
  static constexpr std::chrono::seconds kLogInterval{60};

  // Checks the options (errors name the flag) and starts the background
  // thread, which connects; until it has, limits are held by local shares.
  static absl::StatusOr<std::unique_ptr<SharedRateLimits>> Create(
      const RedisOptions& options, const Clock& clock,
      SharedRateObserver observer = {});
  ~SharedRateLimits() override;

  RateDecision Reserve(const std::string& key, const RateLimit& limit,
                       MonoTime latest) override;
  void Unreserve(const std::string& key, const RateLimit& limit,
                 const RateDecision& reserved) override;

  bool shared() const { return up_.load(std::memory_order_acquire); }
  uint32_t replicas_seen() const { return replicas_.load(); }
  // Waits (for tests) until Redis is connected or `deadline`.
  bool WaitShared(MonoTime deadline) const;

 private:
  // Granted calls of one round trip still to take: the next at `first` (or
  // now, when that is earlier), one every `spacing` after it.
  struct Batch {
    MonoTime first{};
    MonoTime received{};  // when Redis' answer came
    std::chrono::nanoseconds spacing{};
    uint32_t count = 0;
  };
  struct KeyState {
    RateLimit limit;
    std::chrono::nanoseconds max_wait{};  // the last call's
    std::deque<Batch> lease;              // earliest first
    uint32_t leased = 0;                  // calls in `lease`
    // Redis' last refusal: no call before this.
    MonoTime next_at{};
    // Calls seen in the current and the previous second.
    MonoTime window_start{};
    uint32_t window_calls = 0;
    uint32_t previous_calls = 0;
    bool refill_queued = false;
  };
  struct Grant {
    int64_t count = 0;
    std::chrono::microseconds first_offset{};  // from Redis' now
  };

  SharedRateLimits(const RedisOptions& options, const Clock& clock,
                   SharedRateObserver observer,
                   std::unique_ptr<RedisConnection> redis);
  void Loop();
  void TryConnect();
  void Heartbeat();
  void RefillQueued();
  void MarkDown(const absl::Status& why);
  RateDecision Fallback(const std::string& key, const RateLimit& limit,
                        MonoTime latest);
  RateLimit Share(const RateLimit& limit) const;
  std::string ShareText() const;  // "1/3, the replicas last seen"
  // The one warning of an outage: why, and the share each limit falls to.
  void WarnShares(const absl::Status& why) const;
  // Whether a line logged at `*last` is old enough to log again; if so,
  // `*last` is now. Under mu_.
  static bool DueLocked(MonoTime* last);
  // The Redis command that grants up to `n` calls of `key`.
  std::vector<std::string> GrantCommand(
      const std::string& key, const RateLimit& limit, uint32_t n,
      std::chrono::nanoseconds max_wait) const;
  static absl::StatusOr<Grant> ParseGrant(const RedisReply& reply);
  // Calls to lease ahead of this key's demand (0: none).
  static uint32_t Ahead(const KeyState& state);
  // Under mu_.
  KeyState& StateLocked(const std::string& key);
  void DropExpiredLocked(KeyState& state, MonoTime now);
  void AddGrantLocked(KeyState& state, const Grant& grant, MonoTime received);
  void MaybeQueueRefillLocked(const std::string& key, KeyState& state);

  const RedisOptions options_;
  const Clock& clock_;
  const SharedRateObserver observer_;
  const std::string replica_id_;
  RateLimits local_;  // the local shares while Redis is unreachable

  // A turn with the connection, one at a time, waited for until `deadline`
  // at most (a mutex and a flag: std::timed_mutex's timed lock is not seen
  // by ThreadSanitizer).
  class ConnectionTurn {
   public:
    ConnectionTurn(SharedRateLimits& owner, MonoTime deadline);
    ~ConnectionTurn() { Release(); }
    ConnectionTurn(const ConnectionTurn&) = delete;
    ConnectionTurn& operator=(const ConnectionTurn&) = delete;
    bool held() const { return held_; }
    void Release();

   private:
    SharedRateLimits& owner_;
    bool held_ = false;
  };

  // The connection and its scripts, used by the holder of a ConnectionTurn.
  std::mutex turn_mu_;
  std::condition_variable turn_free_;
  bool turn_taken_ = false;                 // guarded by turn_mu_
  std::unique_ptr<RedisConnection> redis_;  // used under a ConnectionTurn
  std::string grant_sha_;                   // used under a ConnectionTurn
  std::string heartbeat_sha_;               // used under a ConnectionTurn

  std::atomic<bool> up_{false};
  std::atomic<uint32_t> replicas_{0};  // 0: never seen

  mutable std::mutex mu_;
  mutable std::condition_variable wake_;
  std::unordered_map<std::string, KeyState> keys_;  // guarded by mu_
  std::vector<std::string> refills_;                // guarded by mu_
  bool stopping_ = false;                           // guarded by mu_
  bool down_said_ = false;   // the warning for this outage; guarded by mu_
  MonoTime last_warning_{};  // guarded by mu_
  MonoTime last_info_{};     // guarded by mu_
  std::thread thread_;
};

}  // namespace egress
