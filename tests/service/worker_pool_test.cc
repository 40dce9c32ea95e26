// WorkerPool: fixed threads, per-worker state, most-recently-idle first,
// bounded queue and a drain that loses nothing.
#include "service/pool/worker_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fakes/wait_until.h"

namespace egress {
namespace {

using std::chrono::milliseconds;

// Locals that retired, across the test's pools.
std::atomic<int> retired_locals{0};

struct Local {
  explicit Local(size_t i) : index(i) {}
  void Maintain() { ++maintained; }
  void Retire() { ++retired_locals; }
  absl::AnyInvocable<void()> Demote() {
    ++demoted;
    return nullptr;
  }
  size_t index;
  std::thread::id thread = std::this_thread::get_id();
  std::atomic<int> maintained{0};
  std::atomic<int> demoted{0};
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
  // A fixed pool of `workers`.
  std::unique_ptr<WorkerPool<Local>> MakePool(size_t workers,
                                              size_t max_queue) {
    WorkerPoolOptions options;
    options.min_workers = workers;
    options.max_workers = workers;
    options.max_queue = max_queue;
    options.maintenance_interval = milliseconds(20);
    options.demote_depth = 1;  // the one right below the top
    options.on_workers = [this](size_t, size_t busy) { busy_ = busy; };
    return std::make_unique<WorkerPool<Local>>(
        options, [](size_t i) { return std::make_unique<Local>(i); });
  }

  // Submits a task and waits until it has run; returns the worker's index.
  size_t RunOne(WorkerPool<Local>& pool) {
    std::promise<size_t> done;
    EXPECT_TRUE(pool.TrySubmit([&](Local& l) { done.set_value(l.index); }));
    return done.get_future().get();
  }

  std::atomic<size_t> busy_{0};  // as the pool last reported it
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
    // wait until it has, so the test checks the policy, not a race.
    ASSERT_TRUE(WaitUntil([&] { return busy_.load() == 0; })) << "call " << i;
    EXPECT_EQ(RunOne(*pool), first) << "call " << i;
  }
}

TEST_F(WorkerPoolTest, AWaitingWorkerAnotherGoesOnTopOfIsDemoted) {
  // (demote_depth 1, MakePool's: the worker right below the top.)
  // The worker below the top will not take the next task: its Local is asked
  // to give up what it keeps (the service parks its session for all), each
  // time the top worker comes back, and the top worker never is.
  auto pool = MakePool(2, 100);
  const size_t first = RunOne(*pool);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(WaitUntil([&] { return busy_.load() == 0; })) << "call " << i;
    ASSERT_EQ(RunOne(*pool), first) << "call " << i;
  }
  ASSERT_TRUE(WaitUntil([&] { return busy_.load() == 0; }));
  int demoted_first = 0, demoted_other = 0;
  pool->ForEachLocal([&](Local& l) {
    (l.index == first ? demoted_first : demoted_other) += l.demoted.load();
  });
  EXPECT_EQ(demoted_first, 0);
  EXPECT_GE(demoted_other, 5);
}

TEST_F(WorkerPoolTest,
       WithDemoteDepthTwoTheWorkerRightBelowTheTopKeepsItsState) {
  WorkerPoolOptions options;
  options.min_workers = options.max_workers = 3;
  options.maintenance_interval = std::chrono::seconds(60);  // no Maintain
  options.demote_depth = 2;
  options.on_workers = [this](size_t, size_t busy) { busy_ = busy; };
  WorkerPool<Local> pool(options,
                         [](size_t i) { return std::make_unique<Local>(i); });
  const size_t first = RunOne(pool);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(WaitUntil([&] { return busy_.load() == 0; })) << "call " << i;
    ASSERT_EQ(RunOne(pool), first) << "call " << i;
  }
  ASSERT_TRUE(WaitUntil([&] { return busy_.load() == 0; }));
  std::vector<int> demoted;
  pool.ForEachLocal([&](Local& l) { demoted.push_back(l.demoted.load()); });
  std::sort(demoted.begin(), demoted.end());
  ASSERT_EQ(demoted.size(), 3u);
  EXPECT_EQ(demoted[0], 0);  // the top
  EXPECT_EQ(demoted[1], 0);  // right below it
  EXPECT_GE(demoted[2], 5);  // two below: each time the top came back
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
  options.min_workers = 8;
  options.max_workers = 8;
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

// Elastic pools: `min` warm workers, up to `max`, extra ones retiring after
// `retire` idle; `counts` gets (workers, busy) at every change.
class ElasticPoolTest : public WorkerPoolTest {
 protected:
  std::unique_ptr<WorkerPool<Local>> MakeElastic(size_t min, size_t max,
                                                 milliseconds retire) {
    WorkerPoolOptions options;
    options.min_workers = min;
    options.max_workers = max;
    options.max_queue = 10;
    options.idle_retire = retire;
    options.maintenance_interval = milliseconds(10);
    options.on_workers = [this](size_t workers, size_t busy) {
      workers_seen_ = workers;
      busy_seen_ = busy;
    };
    return std::make_unique<WorkerPool<Local>>(
        options, [](size_t i) { return std::make_unique<Local>(i); });
  }

  // Starts `n` tasks that block on `gate`; returns once all of them run.
  void Block(WorkerPool<Local>& pool, int n, Gate& gate) {
    std::atomic<int> running{0};
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(pool.TrySubmit([&running, &gate](Local&) {
        ++running;
        gate.Wait();
      }));
    }
    for (int i = 0; i < 500 && running < n; ++i) {
      std::this_thread::sleep_for(milliseconds(2));
    }
    ASSERT_EQ(running.load(), n);
  }

  // Waits (boundedly, 5 s) until the pool has `n` workers.
  bool WaitForWorkers(WorkerPool<Local>& pool, size_t n) {
    for (int i = 0; i < 500 && pool.Workers() != n; ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    return pool.Workers() == n;
  }

  std::atomic<size_t> workers_seen_{0};
  std::atomic<size_t> busy_seen_{0};
};

TEST_F(ElasticPoolTest, ACallThatFindsNoIdleWorkerStartsOne) {
  auto pool = MakeElastic(1, 4, std::chrono::minutes(5));
  EXPECT_EQ(pool->Workers(), 1u);
  Gate gate;
  Block(*pool, 4, gate);  // each on a worker of its own, none queued
  EXPECT_EQ(pool->Workers(), 4u);
  EXPECT_EQ(pool->QueueDepth(), 0u);
  EXPECT_EQ(workers_seen_.load(), 4u);
  EXPECT_EQ(busy_seen_.load(), 4u);
  // At the maximum, the next one waits in the queue.
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool->TrySubmit([&](Local&) { ran = true; }));
  EXPECT_EQ(pool->QueueDepth(), 1u);
  EXPECT_EQ(pool->Workers(), 4u);
  gate.Open();
  pool->Shutdown();
  EXPECT_TRUE(ran.load());
}

TEST_F(ElasticPoolTest, IdleWorkersAboveTheMinimumRetireAndSlotsAreReused) {
  const int retired_before = retired_locals.load();
  // Declared before the pool: tasks still inside Wait() when it opens must
  // find it alive.
  Gate first_burst;
  Gate gate;
  auto pool = MakeElastic(2, 8, milliseconds(50));
  Block(*pool, 8, first_burst);
  EXPECT_EQ(pool->Workers(), 8u);
  first_burst.Open();
  ASSERT_TRUE(WaitForWorkers(*pool, 2)) << pool->Workers();
  // A retiring worker leaves the count before its Local is destroyed: wait
  // (boundedly) for the last destructor too.
  for (int i = 0; i < 500 && retired_locals.load() - retired_before < 6; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(retired_locals.load() - retired_before, 6);
  EXPECT_EQ(workers_seen_.load(), 2u);
  for (int i = 0; i < 500 && busy_seen_.load() != 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(busy_seen_.load(), 0u);
  // A new burst starts workers again, on the retired slots (indices < 8).
  std::mutex mu;
  std::set<size_t> indices;
  std::atomic<int> running{0};
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(pool->TrySubmit([&](Local& l) {
      {
        std::lock_guard<std::mutex> lock(mu);
        indices.insert(l.index);
      }
      ++running;
      gate.Wait();
    }));
  }
  for (int i = 0; i < 500 && running < 8; ++i) {
    std::this_thread::sleep_for(milliseconds(2));
  }
  EXPECT_EQ(running.load(), 8);
  EXPECT_EQ(indices.size(), 8u);
  EXPECT_LT(*indices.rbegin(), 8u);
  gate.Open();
  pool->Shutdown();  // before `indices` and `running` go
}

TEST_F(ElasticPoolTest, TheWarmWorkerNeverRetiresUnderSteadyLoad) {
  Gate gate;  // before the pool: it outlives every task
  auto pool = MakeElastic(1, 4, milliseconds(60));
  Block(*pool, 4, gate);
  gate.Open();
  // Steady light traffic (a call every 10 ms, 60 calls) stays on the most
  // recently idle worker; the others retire around it. Each task goes back
  // on the idle stack before it answers, as the service's calls do, so the
  // next call never finds the stack empty and starts a worker.
  auto run_released = [&] {
    std::promise<size_t> done;
    EXPECT_TRUE(pool->TrySubmit([&](Local& l) {
      WorkerPool<Local>::ReleaseCurrentWorker();
      done.set_value(l.index);
    }));
    return done.get_future().get();
  };
  std::set<size_t> used;
  for (int i = 0; i < 60; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
    used.insert(run_released());
  }
  ASSERT_TRUE(WaitForWorkers(*pool, 1));
  // The warm one kept serving: at most the first call found another on top.
  EXPECT_LE(used.size(), 2u);
  const size_t warm = run_released();
  EXPECT_EQ(used.count(warm), 1u);
}

}  // namespace
}  // namespace egress
