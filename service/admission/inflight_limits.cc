#include "service/admission/inflight_limits.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/base/defaults.h"
#include "service/base/error_details.h"

namespace egress {
namespace {

// Takes `id` out of a time index (expiry_, not_before_) where it is at `at`.
void EraseIndexed(std::multimap<MonoTime, uint64_t>& index, MonoTime at,
                  uint64_t id) {
  auto [first, last] = index.equal_range(at);
  for (auto it = first; it != last; ++it) {
    if (it->second == id) {
      index.erase(it);
      return;
    }
  }
}

}  // namespace

InflightSlot& InflightSlot::operator=(InflightSlot&& other) noexcept {
  if (this != &other) {
    Release();
    limits_ = other.limits_;
    origin_ = std::move(other.origin_);
    caller_ = std::move(other.caller_);
    other.limits_ = nullptr;
  }
  return *this;
}

void InflightSlot::Release() {
  if (limits_ == nullptr) return;
  InflightLimits* limits = limits_;
  limits_ = nullptr;
  limits->Release(origin_, caller_);
}

InflightLimits::InflightLimits(const InflightLimitsOptions& options,
                               const Clock& clock)
    : options_(options), clock_(clock) {
  if (options_.expiry_thread) {
    expiry_thread_ = std::thread([this] { ExpiryLoop(); });
  }
}

InflightLimits::~InflightLimits() {
  std::vector<Done> refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& [id, w] : waiters_) refused.push_back(std::move(w->done));
    waiters_.clear();
    expiry_.clear();
    for (auto& [id, d] : delayed_) refused.push_back(std::move(d->done));
    delayed_.clear();
    not_before_.clear();
    origins_.clear();
    callers_.clear();
  }
  expiry_cv_.notify_all();
  if (expiry_thread_.joinable()) expiry_thread_.join();
  for (Done& done : refused) {
    done(WithReason(
        absl::CancelledError("egressd is stopping; the call never started"),
        ErrorReason::kShuttingDown));
  }
}

bool InflightLimits::OriginFull(const std::string& origin) const {
  auto it = origins_.find(origin);
  if (it == origins_.end()) return false;
  const size_t limit = it->second.limit.value_or(options_.max_per_origin);
  return limit != 0 && it->second.inflight >= limit;
}

std::string InflightLimits::OriginLimitText(const std::string& origin) const {
  auto it = origins_.find(origin);
  if (it != origins_.end() && it->second.limit.has_value()) {
    return absl::StrCat("its origins entry's max_inflight=", *it->second.limit);
  }
  return absl::StrCat("--max_inflight_per_origin=", options_.max_per_origin);
}

bool InflightLimits::CallerFull(const std::string& caller, size_t limit) const {
  if (limit == 0) return false;
  auto it = callers_.find(caller);
  return it != callers_.end() && it->second.inflight >= limit;
}

void InflightLimits::NotifyWaiting() {
  if (options_.on_waiting) {
    options_.on_waiting(waiting_origins_, waiting_callers_);
  }
}

uint64_t InflightLimits::Acquire(const std::string& origin,
                                 const std::string& caller, size_t caller_limit,
                                 const Deadline& deadline, Done done,
                                 std::atomic<uint64_t>* waiting_id,
                                 std::optional<size_t> origin_limit,
                                 MonoTime not_before) {
  std::unique_lock<std::mutex> lock(mu_);
  if (not_before != MonoTime{} && not_before > clock_.Now()) {
    auto d = std::make_shared<Delayed>(
        Delayed{next_id_++, origin, caller, caller_limit, deadline,
                std::move(done), waiting_id, origin_limit, not_before});
    const uint64_t id = d->id;
    if (waiting_id != nullptr) waiting_id->store(id);
    not_before_.emplace(not_before, id);
    delayed_[id] = std::move(d);
    expiry_cv_.notify_one();
    return id;
  }
  if (origin_limit.has_value()) {
    origins_[origin].limit = origin_limit;
  } else if (auto it = origins_.find(origin); it != origins_.end()) {
    it->second.limit.reset();
  }
  const bool origin_full = OriginFull(origin);
  const bool caller_full = CallerFull(caller, caller_limit);
  if (!origin_full && !caller_full) {
    ++origins_[origin].inflight;
    ++callers_[caller].inflight;
    lock.unlock();
    done(InflightSlot(this, origin, caller));
    return 0;
  }
  const Queue queue = origin_full ? Queue::kOrigin : Queue::kCaller;
  Key& key = queue == Queue::kOrigin ? origins_[origin] : callers_[caller];
  if (key.waiting.size() >= options_.max_waiting) {
    const std::string why =
        queue == Queue::kOrigin
            ? absl::StrCat("origin ", origin, " has ", OriginLimitText(origin),
                           " calls in flight and ", key.waiting.size(),
                           " waiting (--max_queue)")
            : absl::StrCat("caller ", caller, " has its limit of ",
                           caller_limit,
                           " calls in flight (--max_inflight_per_caller or "
                           "its identity's max_inflight=) and ",
                           key.waiting.size(), " waiting (--max_queue)");
    Tidy(origins_, origin);
    Tidy(callers_, caller);
    lock.unlock();
    done(WithRetryDelay(
        WithReason(absl::ResourceExhaustedError(
                       absl::StrCat(why, "; retry with backoff")),
                   ErrorReason::kQueueFull,
                   {{"origin", origin}, {"limit", "--max_queue"}}),
        defaults::kBusyRetryDelay));
    return 0;
  }
  auto w = std::make_shared<Waiter>();
  w->id = next_id_++;
  w->origin = origin;
  w->caller = caller;
  w->caller_limit = caller_limit;
  w->deadline = deadline.at();
  w->since = clock_.Now();
  w->done = std::move(done);
  waiters_[w->id] = w;
  if (!deadline.IsNever()) {
    expiry_.emplace(deadline.at(), w->id);
    expiry_cv_.notify_one();
  }
  const uint64_t id = w->id;
  if (waiting_id != nullptr) waiting_id->store(id);
  Enqueue(std::move(w), queue);
  return id;
}

void InflightLimits::Enqueue(std::shared_ptr<Waiter> w, Queue queue) {
  w->queue = queue;
  if (queue == Queue::kOrigin) {
    ++waiting_origins_;
    origins_[w->origin].waiting.push_back(std::move(w));
  } else {
    ++waiting_callers_;
    callers_[w->caller].waiting.push_back(std::move(w));
  }
  NotifyWaiting();
}

void InflightLimits::Forget(const Waiter& w) {
  waiters_.erase(w.id);
  if (w.deadline != MonoTime::max()) EraseIndexed(expiry_, w.deadline, w.id);
}

void InflightLimits::Start(const std::shared_ptr<Waiter>& w, Ready& ready) {
  Forget(*w);
  ++origins_[w->origin].inflight;
  ++callers_[w->caller].inflight;
  ready.emplace_back(std::move(w->done),
                     InflightSlot(this, w->origin, w->caller));
}

void InflightLimits::Admit(const std::string& origin, const std::string& caller,
                           Ready& ready) {
  // Calls waiting for this origin, then for this caller, in order; one that
  // now lacks only the other slot moves to that one's queue.
  for (bool progress = true; progress;) {
    progress = false;
    auto o = origins_.find(origin);
    if (o != origins_.end() && !o->second.waiting.empty() &&
        !OriginFull(origin)) {
      std::shared_ptr<Waiter> w = std::move(o->second.waiting.front());
      o->second.waiting.pop_front();
      --waiting_origins_;
      if (CallerFull(w->caller, w->caller_limit)) {
        Enqueue(std::move(w), Queue::kCaller);
      } else {
        Start(w, ready);
      }
      progress = true;
    }
    auto c = callers_.find(caller);
    if (c != callers_.end() && !c->second.waiting.empty()) {
      std::shared_ptr<Waiter> front = c->second.waiting.front();
      if (!CallerFull(caller, front->caller_limit)) {
        c->second.waiting.pop_front();
        --waiting_callers_;
        if (OriginFull(front->origin)) {
          Enqueue(std::move(front), Queue::kOrigin);
        } else {
          Start(front, ready);
        }
        progress = true;
      }
    }
  }
  NotifyWaiting();
}

void InflightLimits::Release(const std::string& origin,
                             const std::string& caller) {
  Ready ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    --origins_[origin].inflight;
    --callers_[caller].inflight;
    Admit(origin, caller, ready);
    Tidy(origins_, origin);
    Tidy(callers_, caller);
  }
  for (auto& [done, slot] : ready) done(std::move(slot));
}

void InflightLimits::Tidy(std::unordered_map<std::string, Key>& map,
                          const std::string& key) {
  auto it = map.find(key);
  if (it != map.end() && it->second.inflight == 0 &&
      it->second.waiting.empty()) {
    map.erase(it);
  }
}

namespace {

// Takes `w` out of `key`'s queue; false when it is not there.
template <typename Key, typename Waiter>
bool Unqueue(Key& key, const Waiter* w) {
  auto it = std::find_if(key.waiting.begin(), key.waiting.end(),
                         [w](const auto& p) { return p.get() == w; });
  if (it == key.waiting.end()) return false;
  key.waiting.erase(it);
  return true;
}

}  // namespace

void InflightLimits::Cancel(uint64_t id) {
  Done done;
  std::string what;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto d = delayed_.find(id); d != delayed_.end()) {
      done = std::move(d->second->done);
      EraseIndexed(not_before_, d->second->not_before, id);
      delayed_.erase(d);
    }
  }
  if (done) {
    done(absl::CancelledError(
        "call cancelled while waiting for its rate limit; the upstream was "
        "not contacted"));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    std::shared_ptr<Waiter> w = it->second;
    Forget(*w);
    if (w->queue == Queue::kOrigin) {
      Unqueue(origins_[w->origin], w.get());
      --waiting_origins_;
      what = absl::StrCat("origin ", w->origin);
    } else {
      Unqueue(callers_[w->caller], w.get());
      --waiting_callers_;
      what = absl::StrCat("caller ", w->caller);
    }
    Tidy(origins_, w->origin);
    Tidy(callers_, w->caller);
    NotifyWaiting();
    done = std::move(w->done);
  }
  done(absl::CancelledError(
      absl::StrCat("call cancelled while waiting for a slot of ", what,
                   "; the upstream was not contacted")));
}

void InflightLimits::ExpireWaiting() {
  std::vector<std::pair<Done, absl::Status>> expired;
  std::vector<std::shared_ptr<Delayed>> due;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const MonoTime now = clock_.Now();
    while (!not_before_.empty() && not_before_.begin()->first <= now) {
      auto found = delayed_.find(not_before_.begin()->second);
      not_before_.erase(not_before_.begin());
      if (found == delayed_.end()) continue;
      due.push_back(std::move(found->second));
      delayed_.erase(found);
    }
    while (!expiry_.empty() && expiry_.begin()->first <= now) {
      auto found = waiters_.find(expiry_.begin()->second);
      expiry_.erase(expiry_.begin());
      if (found == waiters_.end()) continue;
      std::shared_ptr<Waiter> w = found->second;
      waiters_.erase(found);
      std::string limit;
      const bool by_origin = w->queue == Queue::kOrigin;
      if (by_origin) {
        Unqueue(origins_[w->origin], w.get());
        --waiting_origins_;
        limit = absl::StrCat("origin ", w->origin, " (",
                             OriginLimitText(w->origin), " in flight)");
      } else {
        Unqueue(callers_[w->caller], w.get());
        --waiting_callers_;
        limit = absl::StrCat("caller ", w->caller, " (its limit of ",
                             w->caller_limit, " calls in flight)");
      }
      Tidy(origins_, w->origin);
      Tidy(callers_, w->caller);
      expired.emplace_back(
          std::move(w->done),
          WithRetryDelay(
              WithReason(absl::ResourceExhaustedError(absl::StrFormat(
                             "waited %.3fs for a slot of %s until the call's "
                             "deadline; the upstream was not contacted",
                             Seconds(now - w->since), limit)),
                         by_origin ? ErrorReason::kOriginLimit
                                   : ErrorReason::kCallerLimit,
                         {{"origin", w->origin},
                          {"caller", by_origin ? "" : w->caller},
                          {"limit", by_origin ? "--max_inflight_per_origin"
                                              : "--max_inflight_per_caller"}}),
              defaults::kBusyRetryDelay));
    }
    if (!expired.empty()) NotifyWaiting();
  }
  for (auto& [done, status] : expired) done(status);
  // Their time has come: they ask for their slots now.
  for (const std::shared_ptr<Delayed>& d : due) {
    Acquire(d->origin, d->caller, d->caller_limit, d->deadline,
            std::move(d->done), d->waiting_id, d->origin_limit);
  }
}

size_t InflightLimits::delayed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return delayed_.size();
}

void InflightLimits::ExpiryLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    // The next deadline, or a while: new waits wake this thread.
    std::chrono::nanoseconds wait = std::chrono::seconds(1);
    if (!expiry_.empty()) {
      wait = std::max(std::chrono::nanoseconds(0),
                      std::min(wait, expiry_.begin()->first - clock_.Now()));
    }
    if (!not_before_.empty()) {
      wait =
          std::max(std::chrono::nanoseconds(0),
                   std::min(wait, not_before_.begin()->first - clock_.Now()));
    }
    if (wait > std::chrono::nanoseconds(0)) {
      expiry_cv_.wait_for(lock, wait);
      continue;
    }
    lock.unlock();
    ExpireWaiting();
    lock.lock();
  }
}

size_t InflightLimits::InflightOrigin(const std::string& origin) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = origins_.find(origin);
  return it == origins_.end() ? 0 : it->second.inflight;
}

size_t InflightLimits::InflightCaller(const std::string& caller) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = callers_.find(caller);
  return it == callers_.end() ? 0 : it->second.inflight;
}

}  // namespace egress
