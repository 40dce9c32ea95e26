// WorkerPool: a fixed set of worker threads fed by one bounded queue, each
// worker owning a `Local` state (for the service, its SessionCache) for its
// whole life.
//
// Workers are created once and live until the pool is destroyed, so per-worker
// state is never thrown away under load (gRPC's own thread pools grow and
// shrink). Each task receives its worker's Local by reference: the worker's
// identity is known once, at thread start, never looked up per task.
//
// Idle workers wait on a stack: the worker that finished most recently takes
// the next task. Light traffic then stays on a few warm workers (and their warm
// connections) instead of spreading over all of them.
//
// A worker that stays idle for `maintenance_interval` calls Local::Maintain()
// (the service drops idle sessions there).
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
// Thread safety: TrySubmit, QueueDepth and Shutdown may be called from any
// thread. Local objects are only touched by their own worker (and destroyed by
// it).
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
#include "service/defaults.h"

namespace egress {

struct WorkerPoolOptions {
  size_t workers = defaults::kWorkers;
  // Tasks that may wait for a worker; one more is refused by TrySubmit.
  size_t max_queue = defaults::kMaxQueue;
  std::chrono::nanoseconds maintenance_interval = std::chrono::seconds(5);
  // Called under the pool's lock with the new queue depth whenever it changes.
  std::function<void(size_t)> on_queue_depth;
};

template <typename Local>
class WorkerPool {
 public:
  using Task = std::function<void(Local&)>;
  using LocalFactory = std::function<std::unique_ptr<Local>(size_t index)>;

  // Starts options.workers threads; each builds its Local with
  // make_local(index) on its own thread. REQUIRES: options.workers >= 1.
  WorkerPool(WorkerPoolOptions options, LocalFactory make_local)
      : options_(std::move(options)), make_local_(std::move(make_local)) {
    locals_.assign(options_.workers, nullptr);
    slots_.reserve(options_.workers);
    for (size_t i = 0; i < options_.workers; ++i) {
      slots_.push_back(std::make_unique<Slot>());
    }
    threads_.reserve(options_.workers);
    for (size_t i = 0; i < options_.workers; ++i) {
      threads_.emplace_back([this, i] { Run(i); });
    }
    // Ready only when every worker is on the idle stack: a worker whose thread
    // started late would otherwise land on top of the warm one that just
    // answered, and the first calls would each open a connection.
    std::unique_lock<std::mutex> lock(mu_);
    started_cv_.wait(lock, [&] { return started_ == options_.workers; });
  }

  // Runs every task already accepted, then stops and joins the workers.
  ~WorkerPool() { Shutdown(); }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Hands `task` to the most recently idle worker, or queues it. Returns false,
  // without running it, when the queue is full or the pool is shut down.
  bool TrySubmit(Task task) {
    Slot* slot = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shutdown_) return false;
      if (!idle_.empty()) {
        slot = idle_.back();
        idle_.pop_back();
        slot->on_stack = false;
        slot->task = std::move(task);
      } else if (queue_.size() >= options_.max_queue) {
        return false;
      } else {
        queue_.push_back(std::move(task));
        NotifyDepth();
        return true;
      }
    }
    slot->cv.notify_one();
    return true;
  }

  // Stops accepting tasks, lets the workers finish everything accepted, and
  // joins them. Each worker destroys its Local on its own thread. Idempotent.
  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shutdown_) return;
      shutdown_ = true;
      for (const auto& slot : slots_) slot->cv.notify_one();
    }
    for (std::thread& t : threads_) t.join();
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
    std::lock_guard<std::mutex> lock(current.pool->mu_);
    if (current.slot->on_stack || current.pool->shutdown_ ||
        !current.pool->queue_.empty()) {
      return;
    }
    current.pool->idle_.push_back(current.slot);
    current.slot->on_stack = true;
  }

  // Calls `fn` with every worker's Local, under the pool's lock, from the
  // calling thread. `fn` must be safe to run concurrently with the Local's own
  // worker (the service uses it to abort exchanges when a drain times out).
  void ForEachLocal(const std::function<void(Local&)>& fn) {
    std::lock_guard<std::mutex> lock(mu_);
    for (Local* local : locals_) {
      if (local != nullptr) fn(*local);
    }
  }

  size_t QueueDepth() const {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size();
  }

  size_t size() const { return options_.workers; }

 private:
  struct Slot {
    std::condition_variable cv;
    std::optional<Task> task;  // handed over by TrySubmit; guarded by mu_
    bool on_stack = false;     // in idle_; guarded by mu_
  };
  struct Current {
    WorkerPool* pool = nullptr;
    Slot* slot = nullptr;
  };
  // The pool and slot of the worker running on this thread, set once when the
  // worker starts.
  static thread_local Current current_;

  void NotifyDepth() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (options_.on_queue_depth) options_.on_queue_depth(queue_.size());
  }

  void Run(size_t index) {
    // "egress-w12" in top -H, perf and gdb.
    const std::string name = "egress-w" + std::to_string(index);
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    std::unique_ptr<Local> local = make_local_(index);
    Slot& slot = *slots_[index];
    current_ = {this, &slot};
    std::unique_lock<std::mutex> lock(mu_);
    locals_[index] = local.get();
    // The first pass of the loop below puts this worker on the idle stack
    // before the lock is released.
    if (++started_ == options_.workers) started_cv_.notify_one();
    while (true) {
      std::optional<Task> task;
      if (slot.task.has_value()) {
        // Handed over while this worker was on the idle stack (TrySubmit took
        // it off the stack).
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
          idle_.push_back(&slot);
          slot.on_stack = true;
        }
        // Maintenance runs while the worker stays where it is on the idle
        // stack: leaving and re-entering would put a cold worker on top. A task
        // handed over meanwhile waits in the slot until Maintain returns.
        if (!slot.cv.wait_for(lock, options_.maintenance_interval, [&] {
              return slot.task.has_value() || shutdown_;
            })) {
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
    locals_[index] = nullptr;
    lock.unlock();
    current_ = {};
    local.reset();
  }

  const WorkerPoolOptions options_;
  const LocalFactory make_local_;
  mutable std::mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<Slot*> idle_ ABSL_GUARDED_BY(mu_);  // most recently idle at back
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  size_t started_ ABSL_GUARDED_BY(mu_) = 0;  // workers that reached their loop
  std::condition_variable started_cv_;
  std::vector<Local*> locals_ ABSL_GUARDED_BY(mu_);  // by worker index
  std::vector<std::unique_ptr<Slot>>
      slots_;  // one per worker; fixed after start
  std::vector<std::thread> threads_;
};

template <typename Local>
thread_local typename WorkerPool<Local>::Current WorkerPool<Local>::current_;

}  // namespace egress
