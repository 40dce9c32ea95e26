#include "service/admission/shared_rate_limits.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/base/log.h"

namespace egress {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::nanoseconds;

// GCRA for up to ARGV[3] calls at once. KEYS[1]: the key's time (TAT, in
// microseconds of Redis' clock). ARGV: the interval between calls (us), the
// burst, the calls wanted, how long the first may wait (us). Grants the calls
// that conform now or within the wait, and returns {calls granted, the first
// one's time relative to now (us; may be negative: it may go now)}; none
// granted: {0, when the next would conform}.
constexpr char kGrantScript[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local k = math.floor((now + tonumber(ARGV[4]) + window - tat) / interval)
if k > tonumber(ARGV[3]) then k = tonumber(ARGV[3]) end
local first = tat + interval - window - now
if k < 1 then return {0, first} end
local new_tat = tat + k * interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX',
           math.ceil((new_tat - now) / 1000) + 1000)
return {k, first}
)lua";

// KEYS[1]: the replicas' sorted set. ARGV: this replica's id, how long a
// replica not heard from stays counted (ms). Returns the replicas counted.
constexpr char kHeartbeatScript[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
)lua";

// A replica's demand for a key, counted over whole seconds: over shorter
// windows, a few calls that came together looked busy enough to lease ahead,
// and calls leased that way and never taken made the limit tighter for
// everyone.
constexpr std::chrono::milliseconds kDemandWindow{1000};
constexpr size_t kMaxKeys = 100000;

std::string MakeReplicaId() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::random_device random;
  return absl::StrFormat("%s/%d/%08x", host, getpid(), random());
}

MonoTime SteadyNow() { return std::chrono::steady_clock::now(); }

}  // namespace

SharedRateLimits::ConnectionTurn::ConnectionTurn(SharedRateLimits& owner,
                                                 MonoTime deadline)
    : owner_(owner) {
  std::unique_lock<std::mutex> lock(owner_.turn_mu_);
  auto free = [this] { return !owner_.turn_taken_; };
  if (deadline == MonoTime::max()) {
    owner_.turn_free_.wait(lock, free);
    held_ = true;
  } else {
    held_ = owner_.turn_free_.wait_until(lock, deadline, free);
  }
  if (held_) owner_.turn_taken_ = true;
}

void SharedRateLimits::ConnectionTurn::Release() {
  if (!held_) return;
  held_ = false;
  {
    std::lock_guard<std::mutex> lock(owner_.turn_mu_);
    owner_.turn_taken_ = false;
  }
  owner_.turn_free_.notify_one();
}

absl::StatusOr<std::unique_ptr<SharedRateLimits>> SharedRateLimits::Create(
    const RedisOptions& options, const Clock& clock,
    SharedRateObserver observer) {
  if (options.timeout <= nanoseconds::zero()) {
    return absl::InvalidArgumentError("--redis_timeout must be positive");
  }
  absl::StatusOr<std::unique_ptr<RedisConnection>> redis =
      RedisConnection::Create(options);
  if (!redis.ok()) return redis.status();
  return std::unique_ptr<SharedRateLimits>(new SharedRateLimits(
      options, clock, std::move(observer), *std::move(redis)));
}

SharedRateLimits::SharedRateLimits(const RedisOptions& options,
                                   const Clock& clock,
                                   SharedRateObserver observer,
                                   std::unique_ptr<RedisConnection> redis)
    : options_(options),
      clock_(clock),
      observer_(std::move(observer)),
      replica_id_(MakeReplicaId()),
      local_(clock),
      redis_(std::move(redis)) {
  if (observer_.on_redis_state) observer_.on_redis_state(false);
  thread_ = std::thread([this] { Loop(); });
}

SharedRateLimits::~SharedRateLimits() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  // Leaves the replicas' count at once rather than in kReplicaExpiry.
  ConnectionTurn turn(*this, MonoTime::max());
  if (up_.load() && redis_->connected()) {
    (void)redis_->Run(
        {{"ZREM", options_.key_prefix + ":replicas", replica_id_}},
        SteadyNow() + options_.timeout);
  }
}

bool SharedRateLimits::WaitShared(MonoTime deadline) const {
  std::unique_lock<std::mutex> lock(mu_);
  return wake_.wait_until(lock, deadline, [this] { return up_.load(); });
}

void SharedRateLimits::Loop() {
  MonoTime next_heartbeat{};
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    if (!up_.load()) {
      TryConnect();
      if (up_.load()) next_heartbeat = SteadyNow();  // counted at once
    } else {
      RefillQueued();
      if (up_.load() && SteadyNow() >= next_heartbeat) {
        Heartbeat();
        next_heartbeat = SteadyNow() + kHeartbeat;
      }
    }
    lock.lock();
    if (stopping_) break;
    if (!up_.load()) {
      wake_.wait_for(lock, kProbeInterval, [this] { return stopping_; });
    } else {
      wake_.wait_until(lock, next_heartbeat, [this] {
        return stopping_ || !refills_.empty() || !up_.load();
      });
    }
  }
}

void SharedRateLimits::TryConnect() {
  ConnectionTurn turn(*this, MonoTime::max());
  const MonoTime deadline =
      SteadyNow() + std::max<nanoseconds>(kConnectTimeout, options_.timeout);
  absl::Status status = redis_->Connect(deadline);
  absl::StatusOr<std::vector<RedisReply>> loaded;
  if (status.ok()) {
    loaded = redis_->Run({{"SCRIPT", "LOAD", kGrantScript},
                          {"SCRIPT", "LOAD", kHeartbeatScript}},
                         deadline);
    if (!loaded.ok()) {
      status = loaded.status();
    } else if ((*loaded)[0].type != RedisReply::Type::kString ||
               (*loaded)[1].type != RedisReply::Type::kString) {
      status = absl::FailedPreconditionError(
          "SCRIPT LOAD refused: " + (*loaded)[0].str + (*loaded)[1].str);
      redis_->Close();
    }
  }
  if (status.ok()) {
    // Back only when it answers within the bound calls wait for it (a Redis
    // that slow would time every call out again at once).
    absl::StatusOr<std::vector<RedisReply>> pong =
        redis_->Run({{"PING"}}, SteadyNow() + options_.timeout);
    if (!pong.ok()) {
      status = absl::DeadlineExceededError(absl::StrCat(
          "redis ", options_.address, ": slower than --redis_timeout (",
          pong.status().message(), ")"));
    }
  }
  if (!status.ok()) {
    // Still down: said once, when it went (MarkDown) or at the first try.
    std::lock_guard<std::mutex> lock(mu_);
    if (!down_said_ && DueLocked(&last_warning_)) {
      down_said_ = true;
      WarnShares(status);
    }
    return;
  }
  grant_sha_ = (*loaded)[0].str;
  heartbeat_sha_ = (*loaded)[1].str;
  {
    std::lock_guard<std::mutex> lock(mu_);
    keys_.clear();  // Redis may have restarted: nothing leased holds
    up_.store(true, std::memory_order_release);
    down_said_ = false;
    if (DueLocked(&last_info_)) {
      LogInfo(absl::StrCat("rate limits shared through redis ",
                           redis_->address(), " (", options_.key_prefix,
                           ":*)"));
    }
  }
  wake_.notify_all();
  if (observer_.on_redis_state) observer_.on_redis_state(true);
}

bool SharedRateLimits::DueLocked(MonoTime* last) {
  const MonoTime now = SteadyNow();
  if (*last != MonoTime{} && now - *last < kLogInterval) return false;
  *last = now;
  return true;
}

void SharedRateLimits::MarkDown(const absl::Status& why) {
  bool was_up, say;
  {
    std::lock_guard<std::mutex> lock(mu_);
    was_up = up_.exchange(false);
    keys_.clear();
    refills_.clear();
    if (was_up) down_said_ = true;
    say = was_up && DueLocked(&last_warning_);
  }
  wake_.notify_all();
  if (!was_up) return;
  if (observer_.on_redis_state) observer_.on_redis_state(false);
  if (!say) return;
  WarnShares(why);
}

void SharedRateLimits::WarnShares(const absl::Status& why) const {
  LogWarning(absl::StrCat(
      "rate limits: ", why.message(),
      "; each limit is held by this replica's share (", ShareText(),
      ") until redis answers again (egress_ratelimit_fallback_total)"));
}

std::string SharedRateLimits::ShareText() const {
  if (options_.fallback_replicas > 0) {
    return absl::StrCat("1/", options_.fallback_replicas,
                        ", --redis_fallback_replicas");
  }
  const uint32_t seen = replicas_.load();
  return seen == 0 ? "the whole limit: no replicas seen in redis yet"
                   : absl::StrCat("1/", seen, ", the replicas last seen");
}

void SharedRateLimits::Heartbeat() {
  ConnectionTurn turn(*this, MonoTime::max());
  if (!redis_->connected()) return;
  absl::StatusOr<std::vector<RedisReply>> replies = redis_->Run(
      {{"EVALSHA", heartbeat_sha_, "1", options_.key_prefix + ":replicas",
        replica_id_,
        std::to_string(
            duration_cast<std::chrono::milliseconds>(kReplicaExpiry).count())}},
      SteadyNow() + std::max<nanoseconds>(options_.timeout, kConnectTimeout));
  if (!replies.ok() || (*replies)[0].type != RedisReply::Type::kInteger) {
    MarkDown(replies.ok() ? absl::UnavailableError("heartbeat refused: " +
                                                   (*replies)[0].str)
                          : replies.status());
    return;
  }
  const uint32_t seen =
      static_cast<uint32_t>(std::max<int64_t>((*replies)[0].integer, 1));
  replicas_.store(seen);
  if (observer_.on_replicas) observer_.on_replicas(seen);
}

std::vector<std::string> SharedRateLimits::GrantCommand(
    const std::string& key, const RateLimit& limit, uint32_t n,
    nanoseconds max_wait) const {
  const int64_t interval_us = std::max<int64_t>(
      1, static_cast<int64_t>(std::llround(1e6 / limit.per_second)));
  return {"EVALSHA",
          grant_sha_,
          "1",
          absl::StrCat(options_.key_prefix, ":rate:", key),
          std::to_string(interval_us),
          std::to_string(limit.burst),
          std::to_string(n),
          std::to_string(std::max<int64_t>(
              0, duration_cast<microseconds>(max_wait).count()))};
}

absl::StatusOr<SharedRateLimits::Grant> SharedRateLimits::ParseGrant(
    const RedisReply& reply) {
  if (reply.type == RedisReply::Type::kError) {
    return absl::UnavailableError("the rate script failed: " + reply.str);
  }
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 2 ||
      reply.elements[0].type != RedisReply::Type::kInteger ||
      reply.elements[1].type != RedisReply::Type::kInteger) {
    return absl::DataLossError("the rate script answered something else");
  }
  return Grant{reply.elements[0].integer,
               microseconds(reply.elements[1].integer)};
}

uint32_t SharedRateLimits::Ahead(const KeyState& state) {
  // Calls this replica would see within kLeaseAhead, from the busier of the
  // last two windows; at most kLeaseAhead's worth of the limit, and its burst.
  const double per_window = std::max(state.window_calls, state.previous_calls);
  const double ratio =
      static_cast<double>(kLeaseAhead.count()) / kDemandWindow.count();
  const double by_demand = std::floor(per_window * ratio);
  const double by_limit =
      std::ceil(state.limit.per_second * kLeaseAhead.count() / 1000.0);
  return static_cast<uint32_t>(
      std::min({by_demand, by_limit, static_cast<double>(state.limit.burst)}));
}

SharedRateLimits::KeyState& SharedRateLimits::StateLocked(
    const std::string& key) {
  auto it = keys_.find(key);
  if (it != keys_.end()) return it->second;
  if (keys_.size() >= kMaxKeys) {
    for (auto k = keys_.begin(); k != keys_.end();) {
      k = k->second.refill_queued ? std::next(k) : keys_.erase(k);
    }
  }
  return keys_[key];
}

void SharedRateLimits::DropExpiredLocked(KeyState& state, MonoTime now) {
  while (!state.lease.empty()) {
    Batch& batch = state.lease.front();
    // A call granted to go earlier than it was received is good for
    // kLeaseTtl from then.
    if (std::max(batch.first, batch.received) + kLeaseTtl >= now) break;
    const int64_t late = (now - kLeaseTtl - batch.first) / batch.spacing + 1;
    const uint32_t dropped =
        static_cast<uint32_t>(std::min<int64_t>(late, batch.count));
    batch.count -= dropped;
    batch.first += batch.spacing * dropped;
    state.leased -= dropped;
    if (batch.count == 0) state.lease.pop_front();
  }
}

void SharedRateLimits::AddGrantLocked(KeyState& state, const Grant& grant,
                                      MonoTime received) {
  if (grant.count <= 0) {
    state.next_at = received + grant.first_offset;
    return;
  }
  Batch batch;
  batch.first = received + grant.first_offset;
  batch.received = received;
  batch.spacing = std::max<nanoseconds>(
      nanoseconds(1),
      nanoseconds(static_cast<int64_t>(1e9 / state.limit.per_second)));
  batch.count = static_cast<uint32_t>(grant.count);
  state.leased += batch.count;
  state.lease.push_back(batch);
}

void SharedRateLimits::MaybeQueueRefillLocked(const std::string& key,
                                              KeyState& state) {
  // Refilled when half gone, so that a round trip brings half a lease at
  // least, not one call at a time.
  if (state.refill_queued || state.leased > Ahead(state) / 2) return;
  state.refill_queued = true;
  refills_.push_back(key);
  wake_.notify_all();
}

RateLimit SharedRateLimits::Share(const RateLimit& limit) const {
  const uint32_t replicas = options_.fallback_replicas > 0
                                ? options_.fallback_replicas
                                : std::max<uint32_t>(replicas_.load(), 1);
  RateLimit share;
  share.per_second = limit.per_second / replicas;
  share.burst = std::max<uint32_t>(1, limit.burst / replicas);
  return share;
}

RateDecision SharedRateLimits::Fallback(const std::string& key,
                                        const RateLimit& limit,
                                        MonoTime latest) {
  if (observer_.on_fallback) observer_.on_fallback();
  return local_.Reserve("share " + key, Share(limit), latest);
}

RateDecision SharedRateLimits::Reserve(const std::string& key,
                                       const RateLimit& limit,
                                       MonoTime latest) {
  if (!up_.load(std::memory_order_acquire)) {
    return Fallback(key, limit, latest);
  }
  MonoTime now = clock_.Now();
  // Takes the lease's next call, if it may go by `latest` (or now).
  auto take = [&](KeyState& state, RateDecision* decision) {
    DropExpiredLocked(state, now);
    if (state.lease.empty()) return false;
    Batch& batch = state.lease.front();
    decision->at = std::max(batch.first, now);
    decision->leased = true;
    if (decision->at > now && decision->at > latest) return true;  // refused
    decision->reserved = true;
    batch.first += batch.spacing;
    --state.leased;
    if (--batch.count == 0) state.lease.pop_front();
    MaybeQueueRefillLocked(key, state);
    return true;
  };
  uint32_t wanted;
  nanoseconds max_wait;
  {
    std::lock_guard<std::mutex> lock(mu_);
    KeyState& state = StateLocked(key);
    state.limit = limit;
    state.max_wait = std::max(nanoseconds::zero(), latest - now);
    if (now - state.window_start >= kDemandWindow) {
      state.previous_calls =
          now - state.window_start < 2 * kDemandWindow ? state.window_calls : 0;
      state.window_calls = 0;
      state.window_start = now;
    }
    ++state.window_calls;
    RateDecision decision;
    if (take(state, &decision)) return decision;
    if (state.next_at > now && state.next_at > latest) {
      decision.at = state.next_at;  // Redis said no call before then
      return decision;
    }
    wanted = 1 + Ahead(state);
    max_wait = state.max_wait;
  }
  // One round trip, by --redis_timeout at most, waiting for the connection
  // included.
  const MonoTime deadline = SteadyNow() + options_.timeout;
  ConnectionTurn turn(*this, deadline);
  if (!turn.held()) {
    MarkDown(absl::DeadlineExceededError(absl::StrCat(
        "redis ", options_.address, ": busy longer than --redis_timeout")));
    return Fallback(key, limit, latest);
  }
  if (!up_.load()) return Fallback(key, limit, latest);
  {
    // A round trip that ended while this call waited may have leased one.
    std::lock_guard<std::mutex> lock(mu_);
    now = clock_.Now();
    RateDecision decision;
    if (take(StateLocked(key), &decision)) return decision;
  }
  if (observer_.on_round_trip) observer_.on_round_trip(false);
  absl::StatusOr<std::vector<RedisReply>> replies =
      redis_->Run({GrantCommand(key, limit, wanted, max_wait)}, deadline);
  absl::StatusOr<Grant> grant =
      replies.ok() ? ParseGrant((*replies)[0]) : replies.status();
  if (!grant.ok()) {
    turn.Release();
    MarkDown(grant.status());
    return Fallback(key, limit, latest);
  }
  std::lock_guard<std::mutex> lock(mu_);
  now = clock_.Now();
  KeyState& state = StateLocked(key);
  AddGrantLocked(state, *grant, now);
  RateDecision decision;
  if (take(state, &decision)) return decision;
  decision.at = state.next_at;
  return decision;
}

void SharedRateLimits::Unreserve(const std::string& key, const RateLimit& limit,
                                 const RateDecision& reserved) {
  if (!reserved.reserved) return;
  if (!reserved.leased) {
    local_.Unreserve("share " + key, Share(limit), reserved);
    return;
  }
  // Back to the front of the lease, for the next call.
  std::lock_guard<std::mutex> lock(mu_);
  KeyState& state = StateLocked(key);
  Batch batch;
  batch.first = reserved.at;
  batch.received = clock_.Now();
  batch.spacing = nanoseconds(1);
  batch.count = 1;
  state.lease.push_front(batch);
  ++state.leased;
}

void SharedRateLimits::RefillQueued() {
  std::vector<std::string> keys;
  std::vector<std::vector<std::string>> commands;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const MonoTime now = clock_.Now();
    for (const std::string& key : refills_) {
      auto it = keys_.find(key);
      if (it == keys_.end()) continue;
      KeyState& state = it->second;
      state.refill_queued = false;
      DropExpiredLocked(state, now);
      const uint32_t ahead = Ahead(state);
      if (state.leased >= ahead) continue;
      if (state.next_at > now + state.max_wait) continue;  // none to get
      keys.push_back(key);
      commands.push_back(
          GrantCommand(key, state.limit, ahead - state.leased, state.max_wait));
    }
    refills_.clear();
  }
  if (commands.empty()) return;
  ConnectionTurn turn(*this, MonoTime::max());
  if (!up_.load() || !redis_->connected()) return;
  if (observer_.on_round_trip) observer_.on_round_trip(true);
  absl::StatusOr<std::vector<RedisReply>> replies =
      redis_->Run(commands, SteadyNow() + options_.timeout);
  if (!replies.ok()) {
    MarkDown(replies.status());
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  const MonoTime now = clock_.Now();
  for (size_t i = 0; i < keys.size(); ++i) {
    absl::StatusOr<Grant> grant = ParseGrant((*replies)[i]);
    if (!grant.ok()) continue;  // the next call asks again
    auto it = keys_.find(keys[i]);
    if (it != keys_.end()) AddGrantLocked(it->second, *grant, now);
  }
}

}  // namespace egress
