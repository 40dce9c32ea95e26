// WorkerPool: fixed threads, per-worker state, most-recently-idle first,
// bounded queue and a drain that loses nothing.
#include "service/worker_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace egress {
namespace {

using std::chrono::milliseconds;

struct Local {
  explicit Local(size_t i) : index(i) {}
  void Maintain() { ++maintained; }
  size_t index;
  std::thread::id thread = std::this_thread::get_id();
  std::atomic<int> maintained{0};
};

// A gate the test opens to release tasks that wait on it.
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

class WorkerPoolTest : public ::testing::Test {
 protected:
  std::unique_ptr<WorkerPool<Local>> MakePool(size_t workers,
                                              size_t max_queue) {
    WorkerPoolOptions options;
    options.workers = workers;
    options.max_queue = max_queue;
    options.maintenance_interval = milliseconds(20);
    return std::make_unique<WorkerPool<Local>>(
        options, [](size_t i) { return std::make_unique<Local>(i); });
  }

  // Submits a task and waits until it has run; returns the worker's index.
  size_t RunOne(WorkerPool<Local>& pool) {
    std::promise<size_t> done;
    EXPECT_TRUE(pool.TrySubmit([&](Local& l) { done.set_value(l.index); }));
    return done.get_future().get();
  }
};

TEST_F(WorkerPoolTest, EachTaskRunsOnItsWorkersOwnThreadWithItsLocal) {
  auto pool = MakePool(4, 100);
  std::mutex mu;
  std::set<size_t> bad;   // workers whose Local came from another thread
  std::set<size_t> seen;  // worker indices the tasks ran on
  std::atomic<int> ran{0};
  int submitted = 0;
  // Every task is accepted in the end: a full queue is retried, boundedly.
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (submitted < 200 && std::chrono::steady_clock::now() < give_up) {
    const bool accepted = pool->TrySubmit([&](Local& l) {
      std::lock_guard<std::mutex> lock(mu);
      if (l.thread != std::this_thread::get_id()) bad.insert(l.index);
      seen.insert(l.index);
      ++ran;
    });
    if (accepted) {
      ++submitted;
    } else {
      std::this_thread::sleep_for(milliseconds(1));
    }
  }
  ASSERT_EQ(submitted, 200);
  pool->Shutdown();  // runs whatever is still queued
  EXPECT_EQ(ran.load(), 200);
  EXPECT_TRUE(bad.empty());
  ASSERT_FALSE(seen.empty());
  EXPECT_LT(*seen.rbegin(), 4u);
}

TEST_F(WorkerPoolTest, MostRecentlyIdleWorkerTakesTheNextTask) {
  auto pool = MakePool(8, 100);
  const size_t first = RunOne(*pool);
  // Sequential light traffic stays on that one warm worker.
  for (int i = 0; i < 50; ++i) {
    // The worker pushes itself back on the stack right after the task returns;
    // give it that moment so the test checks the policy, not a race.
    std::this_thread::sleep_for(milliseconds(1));
    EXPECT_EQ(RunOne(*pool), first) << "call " << i;
  }
}

TEST_F(WorkerPoolTest, ReleasedWorkerTakesTheNextTaskBeforeItsOwnReturns) {
  auto pool = MakePool(8, 100);
  Gate gate;
  std::promise<size_t> first;
  ASSERT_TRUE(pool->TrySubmit([&](Local& l) {
    WorkerPool<Local>::ReleaseCurrentWorker();
    first.set_value(l.index);
    gate.Wait();  // still inside the first task
  }));
  const size_t first_index = first.get_future().get();
  std::promise<size_t> second;
  ASSERT_TRUE(pool->TrySubmit([&](Local& l) { second.set_value(l.index); }));
  std::future<size_t> second_index = second.get_future();
  // The released worker was on top of the idle stack, so it got the task, which
  // waits for the first one to return.
  EXPECT_EQ(second_index.wait_for(milliseconds(50)),
            std::future_status::timeout);
  gate.Open();
  EXPECT_EQ(second_index.get(), first_index);
}

TEST_F(WorkerPoolTest, WorkersThatStartLateDoNotLandOnTopOfAWarmOne) {
  // Half the workers take a while to build their Local, as a loaded machine
  // would make them. The pool is not ready until all of them are idle, so the
  // first warm worker stays on top of the stack from the very first task.
  WorkerPoolOptions options;
  options.workers = 8;
  options.max_queue = 10;
  WorkerPool<Local> pool(options, [](size_t i) {
    if (i % 2 == 1) std::this_thread::sleep_for(milliseconds(5 * i));
    return std::make_unique<Local>(i);
  });
  auto run_released = [&] {
    std::promise<size_t> done;
    EXPECT_TRUE(pool.TrySubmit([&](Local& l) {
      WorkerPool<Local>::ReleaseCurrentWorker();
      done.set_value(l.index);
    }));
    return done.get_future().get();
  };
  const size_t first = run_released();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(run_released(), first) << i;
}

TEST_F(WorkerPoolTest, ReleaseOffAWorkerThreadDoesNothing) {
  auto pool = MakePool(1, 10);
  WorkerPool<Local>::ReleaseCurrentWorker();
  EXPECT_EQ(RunOne(*pool), 0u);
}

TEST_F(WorkerPoolTest, RefusesWhenQueueIsFull) {
  auto pool = MakePool(1, 2);
  Gate gate;
  std::promise<void> started;
  ASSERT_TRUE(pool->TrySubmit([&](Local&) {
    started.set_value();
    gate.Wait();
  }));
  started.get_future().wait();  // the only worker is busy
  std::atomic<int> ran{0};
  EXPECT_TRUE(pool->TrySubmit([&](Local&) { ++ran; }));
  EXPECT_TRUE(pool->TrySubmit([&](Local&) { ++ran; }));
  EXPECT_EQ(pool->QueueDepth(), 2u);
  EXPECT_FALSE(pool->TrySubmit([&](Local&) { ++ran; }));
  gate.Open();
  pool->Shutdown();
  EXPECT_EQ(ran.load(), 2);
}

TEST_F(WorkerPoolTest, ShutdownRunsEveryAcceptedTask) {
  auto pool = MakePool(2, 1000);
  std::atomic<int> ran{0};
  int accepted = 0;
  for (int i = 0; i < 500; ++i) {
    if (pool->TrySubmit([&](Local&) { ++ran; })) ++accepted;
  }
  pool->Shutdown();
  EXPECT_EQ(ran.load(), accepted);
  EXPECT_FALSE(pool->TrySubmit([&](Local&) { ++ran; }));
}

TEST_F(WorkerPoolTest, IdleWorkersRunMaintenance) {
  std::atomic<Local*> seen{nullptr};
  auto pool = MakePool(1, 10);
  ASSERT_TRUE(pool->TrySubmit([&](Local& l) { seen = &l; }));
  // Bounded wait: 20 ms interval, up to 2 s.
  for (int i = 0; i < 200 && (seen == nullptr || seen.load()->maintained == 0);
       ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_NE(seen.load(), nullptr);
  EXPECT_GT(seen.load()->maintained.load(), 0);
}

TEST_F(WorkerPoolTest, ConcurrentSubmittersAllGetServed) {
  auto pool = MakePool(4, 10000);
  std::atomic<int> ran{0};
  std::atomic<int> accepted{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < 4; ++t) {
    submitters.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        if (pool->TrySubmit([&](Local&) { ++ran; })) ++accepted;
      }
    });
  }
  for (auto& t : submitters) t.join();
  pool->Shutdown();
  EXPECT_EQ(accepted.load(), 2000);
  EXPECT_EQ(ran.load(), 2000);
}

}  // namespace
}  // namespace egress
