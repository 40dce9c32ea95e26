// WorkerPool: long-lived worker threads, from a warm minimum up to a maximum
// started on demand, fed by one bounded queue; each worker owns a `Local`
// state (for the service, its SessionCache) for its whole life.
//
// `min_workers` start with the pool and live until it is destroyed. A task
// that finds no idle worker starts a new one (up to `max_workers`) and runs on
// it at once; only when `max_workers` are busy does it wait in the queue. A
// worker above the minimum that stays idle for `idle_retire` retires: its
// Local's Retire() runs on its own thread (the service drops its sessions
// there, with their own counted reason), then it exits. Under load no worker,
// and so no warm session, is ever thrown away. Each task receives its worker's
// Local by reference: the worker's identity is known once, at thread start,
// never looked up per task.
//
// Idle workers wait on a stack: the worker that finished most recently takes
// the next task. Light traffic then stays on a few warm workers (and their warm
// connections) instead of spreading over all of them, and the workers at the
// bottom of the stack are the ones that idle long enough to retire.
//
// A worker that stays idle for `maintenance_interval` calls Local::Maintain()
// (the service parks its last session in the shared tier there). A worker
// waiting on the stack that others are piled on (`demote_depth` of them) is
// not next in line: when the last of them goes on top, the pool calls the
// waiting worker's Local::Demote() under the pool's lock (it must only move
// state out, quickly) and runs the job it returns, if any, on the pushing
// thread after the lock is released (the service parks the demoted worker's
// session there, so that no idle connection stays hidden in a worker far
// from the top).
//
// Usage:
// clang-format off
//   WorkerPool<MyLocal> pool(options, [](size_t i) {
//     return std::make_unique<MyLocal>(i);
//   });
//   if (!pool.TrySubmit([](MyLocal& local) { ... })) {
//     // queue full
//   }
// clang-format on
//
// Thread safety: TrySubmit, QueueDepth, Workers and Shutdown may be called
// from any thread. Local objects are only touched by their own worker (and
// destroyed by it).
#pragma once

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "service/base/defaults.h"

namespace egress {

struct WorkerPoolOptions {
  size_t min_workers = defaults::kMinWorkers;  // always running, warm
  size_t max_workers = defaults::kMaxWorkers;  // started on demand
  // A worker above min_workers idle this long retires.
  std::chrono::nanoseconds idle_retire = defaults::kWorkerIdleRetire;
  // Tasks that may wait when max_workers are busy; one more is refused.
  size_t max_queue = defaults::kMaxQueue;
  std::chrono::nanoseconds maintenance_interval =
      defaults::kMaintenanceIntervalMax;
  // A worker going on the idle stack demotes the waiting worker this deep
  // below it (1: the one right below): the ones above keep what they hold,
  // being next in line.
  size_t demote_depth = defaults::kWorkerDemoteDepth;
  // Called under the pool's lock with the new queue depth whenever it changes.
  std::function<void(size_t)> on_queue_depth;
  // Called under the pool's lock with the number of workers and of busy ones
  // whenever either changes.
  std::function<void(size_t workers, size_t busy)> on_workers;
};

template <typename Local>
class WorkerPool {
 public:
  // Move-only: a task owns what its call needs (no copy is ever made).
  using Task = absl::AnyInvocable<void(Local&)>;
  // What Local::Demote() returns: work to run outside the pool's lock, or
  // empty.
  using Job = absl::AnyInvocable<void()>;
  using LocalFactory = std::function<std::unique_ptr<Local>(size_t index)>;

  // Starts options.min_workers threads; each builds its Local with
  // make_local(index) on its own thread. REQUIRES: 1 <= min_workers <=
  // max_workers.
  WorkerPool(WorkerPoolOptions options, LocalFactory make_local)
      : options_(std::move(options)), make_local_(std::move(make_local)) {
    std::unique_lock<std::mutex> lock(mu_);
    for (size_t i = 0; i < options_.min_workers; ++i) {
      Slot* slot = NewSlot();
      std::lock_guard<std::mutex> threads(threads_mu_);
      slot->thread = std::thread([this, slot] { Run(*slot); });
    }
    // Ready only when every worker is on the idle stack: a worker whose thread
    // started late would otherwise land on top of the warm one that just
    // answered, and the first calls would each open a connection.
    started_cv_.wait(lock,
                     [&] { return idle_.size() == options_.min_workers; });
  }

  // Runs every task already accepted, then stops and joins the workers.
  ~WorkerPool() { Shutdown(); }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Hands `task` to the most recently idle worker, or to a new one when none
  // is idle and fewer than max_workers run, or queues it. Returns false,
  // without running it, when the queue is full or the pool is shut down.
  bool TrySubmit(Task task) {
    Slot* slot = nullptr;
    std::unique_lock<std::mutex> lock(mu_);
    if (shutdown_) return false;
    if (!idle_.empty()) {
      slot = idle_.back();
      idle_.pop_back();
      slot->on_stack = false;
      slot->task = std::move(task);
      NotifyWorkers();
      lock.unlock();
      slot->cv.notify_one();
      return true;
    }
    if (live_ < options_.max_workers) {
      slot = NewSlot();
      slot->task = std::move(task);  // the new worker runs it first
      NotifyWorkers();
      // Thread objects change only under threads_mu_, taken before mu_ is
      // released, so that Shutdown (which takes threads_mu_ after setting
      // shutdown_ under mu_) joins this worker too.
      std::lock_guard<std::mutex> threads(threads_mu_);
      lock.unlock();
      // A reused slot's previous worker has finished: the join is immediate.
      if (slot->thread.joinable()) slot->thread.join();
      slot->thread = std::thread([this, slot] { Run(*slot); });
      return true;
    }
    if (queue_.size() >= options_.max_queue) return false;
    queue_.push_back(std::move(task));
    NotifyDepth();
    return true;
  }

  // Stops accepting tasks, lets the workers finish everything accepted, and
  // joins them. Each worker destroys its Local on its own thread. Idempotent.
  void Shutdown() {
    std::vector<Slot*> slots;  // no slot is added once shutdown_ is set
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shutdown_) return;
      shutdown_ = true;
      for (const auto& slot : slots_) {
        slot->cv.notify_one();
        slots.push_back(slot.get());
      }
    }
    std::lock_guard<std::mutex> threads(threads_mu_);
    for (Slot* slot : slots) {
      if (slot->thread.joinable()) slot->thread.join();
    }
  }

  // Called by a task, on its worker, when the rest of it is short and never
  // blocks (answering the caller): the worker goes back on the idle stack now,
  // so that a caller's next call, which may arrive before the task returns,
  // finds this warm worker on top instead of a cold one. A task handed to it
  // meanwhile starts when the current one returns. No-op off a worker thread,
  // or when tasks are queued (the worker takes those first).
  static void ReleaseCurrentWorker() {
    Current current = current_;
    if (current.pool == nullptr) return;
    Job demoted;
    {
      std::lock_guard<std::mutex> lock(current.pool->mu_);
      if (current.slot->on_stack || current.pool->shutdown_ ||
          !current.pool->queue_.empty()) {
        return;
      }
      demoted = current.pool->PushIdle(*current.slot);
    }
    if (demoted) demoted();
  }

  // Calls `fn` with every worker's Local, under the pool's lock, from the
  // calling thread. `fn` must be safe to run concurrently with the Local's own
  // worker (the service uses it to abort exchanges when a drain times out).
  void ForEachLocal(const std::function<void(Local&)>& fn) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& slot : slots_) {
      if (slot->local != nullptr) fn(*slot->local);
    }
  }

  size_t QueueDepth() const {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size();
  }

  // Workers running now (min_workers..max_workers).
  size_t Workers() const {
    std::lock_guard<std::mutex> lock(mu_);
    return live_;
  }

 private:
  struct Slot {
    size_t index = 0;  // the worker's number, reused after it retires
    std::condition_variable cv;
    std::optional<Task> task;  // handed over by TrySubmit; guarded by mu_
    bool on_stack = false;     // in idle_; guarded by mu_
    // When it last went on the idle stack; guarded by mu_.
    std::chrono::steady_clock::time_point idle_since;
    Local* local = nullptr;  // guarded by mu_
    // Blocked in its wait on the stack, not touching its Local (so Demote may
    // move state out of it); guarded by mu_.
    bool waiting = false;
    std::thread thread;  // guarded by threads_mu_
  };
  struct Current {
    WorkerPool* pool = nullptr;
    Slot* slot = nullptr;
  };
  // The pool and slot of the worker running on this thread, set once when the
  // worker starts.
  static thread_local Current current_;

  // A slot for a new worker: a retired one's, else a new one. Counts it live.
  Slot* NewSlot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Slot* slot;
    if (!retired_.empty()) {
      slot = retired_.back();
      retired_.pop_back();
    } else {
      slots_.push_back(std::make_unique<Slot>());
      slot = slots_.back().get();
      slot->index = slots_.size() - 1;
    }
    ++live_;
    return slot;
  }

  // Pushes `slot` on the idle stack; returns the Demote job of the worker it
  // went on top of, to run once mu_ is released.
  [[nodiscard]] Job PushIdle(Slot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Job demoted;
    const size_t depth = std::max<size_t>(options_.demote_depth, 1);
    if (idle_.size() >= depth) {
      Slot* below = idle_[idle_.size() - depth];
      if (below->waiting && below->local != nullptr) {
        demoted = below->local->Demote();
      }
    }
    idle_.push_back(&slot);
    slot.on_stack = true;
    // Read under the lock that guards it; the steady clock, not the service's
    // Clock: retirement is housekeeping, never part of a call's timing.
    slot.idle_since = std::chrono::steady_clock::now();
    NotifyWorkers();
    return demoted;
  }

  void NotifyDepth() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (options_.on_queue_depth) options_.on_queue_depth(queue_.size());
  }
  void NotifyWorkers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (options_.on_workers) options_.on_workers(live_, live_ - idle_.size());
  }

  // True when `slot`, idle, should retire now.
  bool ShouldRetire(const Slot& slot) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return slot.on_stack && !slot.task.has_value() &&
           live_ > options_.min_workers &&
           std::chrono::steady_clock::now() - slot.idle_since >=
               options_.idle_retire;
  }

  void Run(Slot& slot) {
    // "egress-w12" in top -H, perf and gdb.
    const std::string name = "egress-w" + std::to_string(slot.index);
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    std::unique_ptr<Local> local = make_local_(slot.index);
    current_ = {this, &slot};
    std::unique_lock<std::mutex> lock(mu_);
    slot.local = local.get();
    bool retire = false;
    while (true) {
      std::optional<Task> task;
      if (slot.task.has_value()) {
        // Handed over while this worker was on the idle stack (TrySubmit took
        // it off the stack), or when TrySubmit started it.
        task = std::move(slot.task);
        slot.task.reset();
        slot.on_stack = false;
      } else if (!slot.on_stack && !queue_.empty()) {
        task = std::move(queue_.front());
        queue_.pop_front();
        NotifyDepth();
      } else if (shutdown_) {
        if (slot.on_stack) {
          idle_.erase(std::find(idle_.begin(), idle_.end(), &slot));
          slot.on_stack = false;
          continue;  // drain the queue with the others, then stop
        }
        break;
      } else {
        if (!slot.on_stack) {
          Job demoted = PushIdle(slot);
          if (idle_.size() == options_.min_workers) started_cv_.notify_one();
          if (demoted) {
            lock.unlock();
            demoted();
            lock.lock();
            continue;  // a task may have come meanwhile
          }
        }
        // Maintenance runs while the worker stays where it is on the idle
        // stack: leaving and re-entering would put a cold worker on top. A task
        // handed over meanwhile waits in the slot until Maintain returns.
        slot.waiting = true;
        const bool woken = slot.cv.wait_for(
            lock, options_.maintenance_interval,
            [&] { return slot.task.has_value() || shutdown_; });
        slot.waiting = false;
        if (!woken) {
          if (ShouldRetire(slot)) {
            idle_.erase(std::find(idle_.begin(), idle_.end(), &slot));
            slot.on_stack = false;
            --live_;
            NotifyWorkers();
            retire = true;
            break;
          }
          lock.unlock();
          local->Maintain();
          lock.lock();
        }
        continue;
      }
      lock.unlock();
      (*task)(*local);
      lock.lock();
    }
    slot.local = nullptr;
    lock.unlock();
    if (retire) local->Retire();
    current_ = {};
    local.reset();
    if (retire) {
      // Only now may a new worker take the slot (and join this thread).
      std::lock_guard<std::mutex> relock(mu_);
      retired_.push_back(&slot);
    }
  }

  const WorkerPoolOptions options_;
  const LocalFactory make_local_;
  mutable std::mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<Slot*> idle_ ABSL_GUARDED_BY(mu_);  // most recently idle at back
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  size_t live_ ABSL_GUARDED_BY(mu_) = 0;  // workers started and not retired
  std::condition_variable started_cv_;
  // Every slot ever made, by index; each outlives its workers.
  std::vector<std::unique_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<Slot*> retired_ ABSL_GUARDED_BY(mu_);  // slots free for reuse
  // Taken after mu_ when both are held; guards Slot::thread.
  std::mutex threads_mu_;
};

template <typename Local>
thread_local typename WorkerPool<Local>::Current WorkerPool<Local>::current_;

}  // namespace egress
