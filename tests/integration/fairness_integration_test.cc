// No upstream and no caller can starve the rest: per-origin and per-caller
// limits with their own queues (holding no worker), and elastic workers, end
// to end through a real gRPC channel to loopback upstreams.
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/paced_upstream.h"
#include "tests/integration/egress_harness.h"

namespace egress {
namespace {

using ::egress::v1::DoResponse;
using ::google::protobuf::util::TimeUtil;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream(path) << text;
  return path;
}

// Waits (boundedly) until `series` reaches `value`; returns the last value.
double WaitForMetric(EgressHarness& egress, const std::string& series,
                     double value, milliseconds limit = milliseconds(5000)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  double now = egress.Metric(series);
  while (now != value && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(10));
    now = egress.Metric(series);
  }
  return now;
}

struct Result {
  grpc::Status status;
  DoResponse response;
};

// `n` calls at once, each on its own thread, with a bearer `token` if any.
class Burst {
 public:
  Burst(EgressHarness& egress, int n, const std::string& url,
        milliseconds timeout, const std::string& token = "")
      : results_(n) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([&egress, this, i, url, timeout, token] {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(20));
        if (!token.empty()) {
          context.AddMetadata("authorization", "Bearer " + token);
        }
        egress::v1::DoRequest request = MakeRequest("GET", url);
        *request.mutable_timeout() =
            TimeUtil::MillisecondsToDuration(timeout.count());
        results_[i].status =
            egress.stub().Do(&context, request, &results_[i].response);
      });
    }
  }
  const std::vector<Result>& Wait() {
    for (auto& t : threads_) t.join();
    threads_.clear();
    return results_;
  }
  ~Burst() { Wait(); }

 private:
  std::vector<Result> results_;
  std::vector<std::thread> threads_;
};

// 200 calls to an origin that answers after 2 s, and calls to a fast origin
// meanwhile: the fast ones are never queued behind the slow ones; the slow
// origin's calls beyond --max_inflight_per_origin (100) wait in its own queue,
// holding no worker, and end at their deadline naming the limit.
TEST(FairnessIntegrationTest, ASlowOriginDelaysNoOtherOrigin) {
  FakeUpstream slow;
  FakeUpstream fast;
  EgressHarness egress;
  egress.Start();  // the defaults: 100 per origin, workers 16..4096
  // 100 calls fill the slow origin's slots (answered after 2 s)...
  Burst first(egress, 100, slow.Url("/slow/2000"), milliseconds(5000));
  ASSERT_EQ(WaitForMetric(egress, "egress_workers_busy", 100), 100);
  // ... and 100 more wait for them, with a 1 s timeout.
  Burst second(egress, 100, slow.Url("/slow/2000"), milliseconds(1000));
  EXPECT_EQ(
      WaitForMetric(egress, "egress_limit_waiting{limit=\"origin\"}", 100),
      100);
  // The waiting calls hold no worker: 100 serve the slow origin, and more
  // workers than the warm 16 were started for them.
  EXPECT_EQ(egress.Metric("egress_workers_busy"), 100);
  EXPECT_GE(egress.Metric("egress_workers"), 100);
  std::vector<int64_t> queued_us;
  for (int i = 0; i < 20; ++i) {
    DoResponse response;
    grpc::Status status =
        egress.Do(MakeRequest("GET", fast.Url("/echo")), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    queued_us.push_back(
        TimeUtil::DurationToMicroseconds(response.timing().queued()));
  }
  std::sort(queued_us.begin(), queued_us.end());
  std::printf(
      "fast origin, 20 calls during the slow burst: queued p50 %lld us, max "
      "%lld us\n",
      static_cast<long long>(queued_us[10]),
      static_cast<long long>(queued_us.back()));
  // A few milliseconds at most, on a noisy 2-core machine.
  EXPECT_LT(queued_us.back(), 20000);
  for (const Result& r : second.Wait()) {
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(r.status.error_message(),
                HasSubstr("for a slot of origin " + slow.Url("") +
                          " (--max_inflight_per_origin=100 in flight) until "
                          "the call's deadline"));
  }
  for (const Result& r : first.Wait()) {
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
  EXPECT_EQ(slow.requests(), 100);  // the waiting ones never reached it
}

// A busy caller waits in its own queue; another caller goes straight through.
TEST(FairnessIntegrationTest, ABusyCallerDelaysNoOtherCaller) {
  FakeUpstream upstream;
  EgressHarness egress;
  const std::string tokens =
      WriteFile("fair-tokens",
                "token-for-busy-0000001 busy\ntoken-for-calm-0000001 calm\n"
                "token-for-batch-000001 batch\n");
  const std::string ids =
      WriteFile("fair-ids", "batch * max_inflight=4 ports=*\n");
  egress.Start([&](Config& c) {
    c.auth_tokens_file = tokens;
    c.identity_hosts_file = ids;
    c.inflight.max_per_caller = 2;
  });
  // Five 1 s calls, two at a time: the last ends after about 3 s.
  Burst busy(egress, 5, upstream.Url("/slow/1000"), milliseconds(8000),
             "token-for-busy-0000001");
  EXPECT_EQ(WaitForMetric(egress, "egress_limit_waiting{limit=\"caller\"}", 3),
            3);
  egress.set_bearer_token("token-for-calm-0000001");
  DoResponse response;
  const auto start = std::chrono::steady_clock::now();
  grpc::Status status =
      egress.Do(MakeRequest("GET", upstream.Url("/echo")), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(500));
  // The identity's own max_inflight=4 replaces --max_inflight_per_caller.
  Burst batch(egress, 4, upstream.Url("/slow/1000"), milliseconds(8000),
              "token-for-batch-000001");
  EXPECT_EQ(WaitForMetric(egress, "egress_limit_waiting{limit=\"caller\"}", 3,
                          milliseconds(500)),
            3);  // still only busy's three
  for (const Result& r : busy.Wait()) EXPECT_TRUE(r.status.ok());
  for (const Result& r : batch.Wait()) EXPECT_TRUE(r.status.ok());
}

// A call that waits for its origin's slot and is cancelled is answered at
// once and never reaches the upstream.
TEST(FairnessIntegrationTest, ACancelledWaitingCallNeverStarts) {
  FakeUpstream upstream;
  EgressHarness egress;
  egress.Start([](Config& c) { c.inflight.max_per_origin = 1; });
  Burst holder(egress, 1, upstream.Url("/slow/1000"), milliseconds(3000));
  ASSERT_EQ(WaitForMetric(egress, "egress_workers_busy", 1), 1);
  grpc::ClientContext context;
  DoResponse response;
  std::thread waiter([&] {
    grpc::Status status = egress.stub().Do(
        &context, MakeRequest("GET", upstream.Url("/slow/1000")), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  });
  ASSERT_EQ(WaitForMetric(egress, "egress_limit_waiting{limit=\"origin\"}", 1),
            1);
  context.TryCancel();
  waiter.join();
  EXPECT_EQ(WaitForMetric(egress, "egress_limit_waiting{limit=\"origin\"}", 0),
            0);
  for (const Result& r : holder.Wait()) EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(upstream.requests(), 1);
}

// --max_buffered_bytes: a request body, a response body with or without a
// Content-Length, refused with RESOURCE_EXHAUSTED naming the budget; every
// byte comes back when the calls end.
TEST(MemoryBudgetIntegrationTest,
     BodiesOverTheBudgetAreRefusedAndNothingLeaks) {
  FakeUpstream upstream;
  EgressHarness egress;
  egress.Start([](Config& c) { c.max_buffered_bytes = 1 << 20; });
  DoResponse response;
  egress::v1::DoRequest upload = MakeRequest("POST", upstream.Url("/echo"));
  upload.set_body(std::string(2 << 20, 'x'));
  grpc::Status status = egress.Do(upload, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("the request needs 2097152 more bytes of "
                        "--max_buffered_bytes=1048576"));
  for (const char* path : {"/bytes/2097152", "/chunked/2097152"}) {
    status = egress.Do(MakeRequest("GET", upstream.Url(path)), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << path;
    EXPECT_THAT(status.error_message(), HasSubstr("response body needs"))
        << path;
    EXPECT_THAT(status.error_message(),
                HasSubstr("--max_buffered_bytes=1048576"))
        << path;
  }
  // Everything came back: a call needing most of the budget goes through.
  // (A refused call gives its lease back once gRPC is done with it, which
  // may be a moment after its caller has the answer: a few tries, bounded.)
  for (int i = 0; i < 50; ++i) {
    status =
        egress.Do(MakeRequest("GET", upstream.Url("/bytes/900000")), &response);
    if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.body().size(), 900000u);
}

// The sum of every series of `family` in `text` (all label sets).
double SumOf(const std::string& text, const std::string& family) {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, family + "{") &&
        !absl::StartsWith(line, family + " "))
      continue;
    double value = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value))
      sum += value;
  }
  return sum;
}

// `n` Do calls at once through the callback API (no thread per call), to
// `url_of(i)`; Wait returns their results.
class AsyncBurst {
 public:
  AsyncBurst(EgressHarness& egress, int n,
             const std::function<std::string(int)>& url_of)
      : calls_(n) {
    for (int i = 0; i < n; ++i) {
      Call& call = calls_[i];
      call.context.set_deadline(std::chrono::system_clock::now() +
                                std::chrono::seconds(30));
      call.request = MakeRequest("GET", url_of(i));
      *call.request.mutable_timeout() = TimeUtil::SecondsToDuration(20);
      egress.stub().async()->Do(&call.context, &call.request, &call.response,
                                [this, &call](grpc::Status status) {
                                  std::lock_guard<std::mutex> lock(mu_);
                                  call.status = std::move(status);
                                  if (++done_ == calls_.size())
                                    cv_.notify_all();
                                });
    }
  }
  ~AsyncBurst() { Wait(); }
  std::vector<Result> Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_ == calls_.size(); });
    std::vector<Result> results;
    for (const Call& call : calls_) {
      results.push_back(Result{call.status, call.response});
    }
    return results;
  }

 private:
  struct Call {
    grpc::ClientContext context;
    egress::v1::DoRequest request;
    DoResponse response;
    grpc::Status status;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  size_t done_ = 0;  // guarded by mu_
  std::vector<Call> calls_;
};

// 2,000 calls at once against upstreams that answer after 1 s, with the
// default pool and limits (16 warm workers up to 4,096; 100 in flight per
// origin, so the calls go to 20 origins): no call waits for a worker, so all
// of them end after about one upstream delay (a fixed pool of 64 would take
// 32 s). A second wave finds the connections warm and recreates no session;
// afterwards the pool shrinks back to the 16 warm workers
// (--worker_idle_timeout shortened to 3 s for the test), and the connections
// stay pooled.
TEST(ElasticPoolIntegrationTest,
     TwoThousandSlowCallsRunAtOnceThenWorkersRetire) {
  constexpr int kCalls = 2000, kOrigins = 20;
  PacedUpstream upstream(kOrigins);
  EgressHarness egress;
  egress.Start([](Config& c) {
    c.worker_pool.idle_retire = std::chrono::seconds(3);
    // 2,000 calls at once on the test's one channel (one connection).
    c.front.guard.max_concurrent_streams = 4096;
  });
  auto url_of = [&](int i) {
    return upstream.Url(i % kOrigins, "/delay/1000");
  };
  // Sessions closed for any reason but eviction over the idle bounds.
  auto recreated = [&] {
    return SumOf(egress.MetricsText(), "egress_session_recreations_total") -
           egress.Metric(
               "egress_session_recreations_total{reason=\"evicted\"}");
  };
  int64_t most_in_upstream = 0;
  for (int wave = 1; wave <= 2; ++wave) {
    const double recreated_before = recreated();
    const int64_t answered_before = upstream.answered();
    const auto start = std::chrono::steady_clock::now();
    std::vector<Result> results = AsyncBurst(egress, kCalls, url_of).Wait();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    int ok = 0;
    int64_t max_queued_us = 0;
    std::string first_error;
    for (const Result& r : results) {
      if (r.status.ok()) {
        ++ok;
        max_queued_us = std::max(
            max_queued_us,
            TimeUtil::DurationToMicroseconds(r.response.timing().queued()));
      } else if (first_error.empty()) {
        first_error =
            absl::StrCat(r.status.error_code(), ": ", r.status.error_message());
      }
    }
    std::printf(
        "wave %d: %d/%d calls answered in %.2f s; queued at most %.1f ms; "
        "%g workers; %lld requests in the upstream at once at most\n",
        wave, ok, kCalls, seconds, max_queued_us / 1e3,
        egress.Metric("egress_workers"),
        static_cast<long long>(upstream.peak_waiting()));
    EXPECT_EQ(ok, kCalls) << "the first failure: " << first_error;
    EXPECT_EQ(upstream.answered() - answered_before, kCalls);
    // The proof that nothing was serialized: a call that waited for a busy
    // worker would have waited for its 1 s exchange.
    EXPECT_LT(max_queued_us, 1000000);
    // Steady load drops no session: no recreation of any reason (evictions
    // are counted below).
    EXPECT_EQ(recreated(), recreated_before);
    most_in_upstream = std::max(most_in_upstream, upstream.peak_waiting());
    upstream.ResetPeakWaiting();
  }
  // Idle, the workers above the warm minimum retire; their connections stay
  // in the shared pool, and every one is idle. The only ones closed are the
  // few the second wave opened beyond 100 per origin (a session a worker
  // still kept for itself when the burst came), evicted over
  // --max_idle_per_origin: at most 1% of the calls.
  EXPECT_EQ(WaitForMetric(egress, "egress_workers", 16, milliseconds(30000)),
            16);
  const double evicted =
      egress.Metric("egress_session_recreations_total{reason=\"evicted\"}");
  EXPECT_LE(evicted, kCalls / 100);
  EXPECT_EQ(recreated(), 0) << egress.MetricsText();
  // Every connection opened is still pooled and idle but the evicted ones.
  // How many were opened is how many requests were in the upstream at once:
  // all 2,000 on an idle machine, fewer on a loaded one, where the burst
  // takes longer than the upstream's 1 s to send and a later call finds an
  // earlier call's connection idle.
  const double idle =
      egress.Metric("egress_pool_connections{origin=\"other\",state=\"idle\"}");
  EXPECT_EQ(idle,
            egress.Metric("egress_connections_opened_total{origin=\"other\"}") -
                evicted);
  EXPECT_GE(idle, most_in_upstream);
  EXPECT_LE(idle, kCalls);
}

}  // namespace
}  // namespace egress
