// Google Benchmark micro-benchmarks of the request path's own work: the
// session-cache hit, request validation, metric recording and response
// conversion. Run: bazel run -c opt //bench:micro_bench
#include <benchmark/benchmark.h>

#include <string>

#include "proto/egress/v1/egress.pb.h"
#include "service/admission/request_validation.h"
#include "service/api/response_proto.h"
#include "service/pool/session_cache.h"
#include "service/telemetry/metrics.h"

namespace egress {
namespace {

class NullObserver final : public SessionObserver {};

void BM_SessionCacheHit(benchmark::State& state) {
  NullObserver observer;
  SessionPool shared(SessionPoolOptions{}, RealClock::Get(), observer);
  SessionCache cache(SessionCacheOptions{}, shared, RealClock::Get(), observer);
  const Origin origin{"https", "api.example.com", 443};
  // Other origins parked in the shared tier, as a busy pool would have.
  for (int i = 0; i < 16; ++i) {
    cache.Lease(
        Origin{"https", "host" + std::to_string(i) + ".example.com", 443});
  }
  cache.Lease(origin);
  for (auto _ : state) {
    SessionLease session = cache.Lease(origin);
    benchmark::DoNotOptimize(&*session);
  }
}
BENCHMARK(BM_SessionCacheHit);

// A worker whose last call went to another origin: it parks that session in
// the shared tier and takes the call's from there (the miss path of a worker
// serving many origins in turn).
void BM_SessionCacheSharedTake(benchmark::State& state) {
  NullObserver observer;
  SessionPool shared(SessionPoolOptions{}, RealClock::Get(), observer);
  SessionCache cache(SessionCacheOptions{}, shared, RealClock::Get(), observer);
  const Origin a{"https", "a.example.com", 443};
  const Origin b{"https", "b.example.com", 443};
  cache.Lease(a);
  cache.Lease(b);
  bool flip = false;
  for (auto _ : state) {
    SessionLease session = cache.Lease(flip ? a : b);
    benchmark::DoNotOptimize(&*session);
    flip = !flip;
  }
}

BENCHMARK(BM_SessionCacheSharedTake);

void BM_ValidateRequest(benchmark::State& state) {
  egress::v1::DoRequest request;
  request.set_method("POST");
  request.set_url("https://api.example.com/v1/items?limit=10&cursor=abcdef");
  for (auto [name, value] : {std::pair{"Content-Type", "application/json"},
                             {"Authorization", "Bearer 0123456789abcdef"},
                             {"Accept", "application/json"},
                             {"X-Request-Id", "7f3c9a"}}) {
    auto* h = request.add_headers();
    h->set_name(name);
    h->set_value(value);
  }
  request.set_body(std::string(256, 'x'));
  const ValidationLimits limits;
  for (auto _ : state) {
    auto validated = ValidateRequest(request, limits);
    benchmark::DoNotOptimize(validated);
  }
}
BENCHMARK(BM_ValidateRequest);

void BM_RecordCall(benchmark::State& state) {
  static Metrics* metrics = new Metrics({"https://api.example.com:443"});
  const std::string method = "GET";
  const std::string origin = "https://api.example.com:443";
  for (auto _ : state) {
    metrics->RecordCall(method, 200, absl::StatusCode::kOk, 0.0012);
    metrics->RecordUpstreamSeconds(origin, RpcKind::kDo, 0.001);
    metrics->RecordFirstByteSeconds(origin, RpcKind::kDo, 0.0008);
  }
}
BENCHMARK(BM_RecordCall)->Threads(1)->Threads(2);

void BM_ResponseConversion(benchmark::State& state) {
  const std::string body(1024, 'b');
  for (auto _ : state) {
    UpstreamResponse response;
    response.status = 200;
    response.headers = {{"Content-Type", "application/json"},
                        {"Content-Length", "1024"},
                        {"Date", "Sun, 29 Nov 2026 15:00:00 GMT"},
                        {"Server", "nginx"}};
    response.body = body;
    egress::v1::DoResponse proto;
    ToResponseProto(std::move(response),
                    CallTiming{std::chrono::microseconds(5)}, proto);
    benchmark::DoNotOptimize(proto);
  }
}
BENCHMARK(BM_ResponseConversion);

}  // namespace
}  // namespace egress

BENCHMARK_MAIN();
