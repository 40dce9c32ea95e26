// egress_bench: a load generator for the Egress API, in the spirit of ghz.
//
//   egress_bench --server=127.0.0.1:50051 --url=http://127.0.0.1:8080/
//       --concurrency=64 --duration=10s [--rps=5000] [--stream] [--json]
//
// Closed loop (default): --concurrency calls in flight, each followed by the
// next as soon as it is answered, for --requests calls or --duration. Open loop
// (--rps): calls are scheduled at a fixed rate (at most --concurrency in
// flight) and latency is measured from the scheduled time, so a stalled service
// cannot hide its queueing (no coordinated omission). Do calls go through
// gRPC's callback API (a few threads drive every call in flight), DoStream
// calls through a thread each. Reports throughput, latency
// p50/p90/p99/p99.9/max from a log-linear histogram, errors by gRPC code, and
// with --pid the service's CPU time per call. Every run is bounded by
// --requests or --duration. --health calls grpc.health.v1.Health/Check
// instead of Do: an empty call gRPC answers at once, the gRPC floor that
// bench/compare measures egressd against.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "grpcpp/generic/generic_stub.h"
#include "proto/egress/v1/egress.grpc.pb.h"
#include "proto/egress/v1/request_forms.h"
#include "service/telemetry/proc_stat.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "egressd address.");
ABSL_FLAG(std::string, url, "", "URL each call requests (required).");
ABSL_FLAG(std::string, urls_file, "",
          "File of URLs, one per line, requested in turn (call k requests "
          "line k modulo their number), instead of --url: many origins.");
ABSL_FLAG(std::string, method, "GET", "HTTP method.");
ABSL_FLAG(std::vector<std::string>, header, {},
          "Headers, \"Name: value\", comma-separated.");
ABSL_FLAG(uint64_t, body_size, 0, "Request body size in bytes.");
ABSL_FLAG(uint32_t, concurrency, 1,
          "Calls in flight (closed loop), or at most in flight (open loop).");
ABSL_FLAG(uint64_t, requests, 0, "Calls to make; 0: until --duration.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10),
          "Longest run (always bounded).");
ABSL_FLAG(double, rps, 0, "Open loop at this rate (calls/s); 0: closed loop.");
ABSL_FLAG(bool, stream, false, "Use DoStream instead of Do.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30), "Deadline of each call.");
ABSL_FLAG(absl::Duration, warmup, absl::ZeroDuration(),
          "Unrecorded calls first, for this long.");
ABSL_FLAG(int32_t, pid, 0, "egressd's PID: report its CPU time per call.");
ABSL_FLAG(uint32_t, channels, 4, "gRPC channels to spread the callers over.");
ABSL_FLAG(bool, json, false, "Print the report as JSON.");
ABSL_FLAG(bool, health, false,
          "Call grpc.health.v1.Health/Check (an empty call answered at once: "
          "the gRPC floor) instead of Do; --url is then not needed.");

namespace {

using Clock = std::chrono::steady_clock;
using Stub = std::unique_ptr<egress::v1::EgressService::Stub>;

// Log-linear histogram of microseconds: 64 sub-buckets per power of two, from
// 1 us to about 2^37 us; relative error below 1.6%.
class Histogram {
 public:
  void Record(double us) {
    const uint64_t v = static_cast<uint64_t>(std::max(1.0, us));
    const int exp = 63 - __builtin_clzll(v);
    const int shift = std::max(0, exp - 6);
    const size_t index = static_cast<size_t>(exp) * 64 + ((v >> shift) & 63);
    if (index >= counts_.size()) counts_.resize(index + 1);
    ++counts_[index];
    ++count_;
    max_ = std::max(max_, us);
  }
  void Merge(const Histogram& other) {
    if (other.counts_.size() > counts_.size())
      counts_.resize(other.counts_.size());
    for (size_t i = 0; i < other.counts_.size(); ++i)
      counts_[i] += other.counts_[i];
    count_ += other.count_;
    max_ = std::max(max_, other.max_);
  }
  double Percentile(double p) const {
    if (count_ == 0) return 0;
    const uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100 * count_));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const int exp = static_cast<int>(i / 64);
        const int shift = std::max(0, exp - 6);
        const uint64_t low =
            exp < 6 ? (i % 64) : ((uint64_t{1} << exp) | ((i % 64) << shift));
        return std::min(max_,
                        static_cast<double>(low + (uint64_t{1} << shift) / 2));
      }
    }
    return max_;
  }
  uint64_t count() const { return count_; }
  double max() const { return max_; }

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double max_ = 0;
};

struct Worker {
  Histogram latency;
  std::map<int, uint64_t> codes;  // gRPC code -> calls
  uint64_t http_errors = 0;       // answered, with status >= 500
  // Completed by the end of --duration (calls still in flight then complete
  // and count for latency, not for throughput, as with wrk).
  uint64_t in_window = 0;
  uint64_t ok_in_window = 0;

  void Count(int code, Clock::time_point now, Clock::time_point end) {
    ++codes[code];
    if (now <= end) {
      ++in_window;
      if (code == 0) ++ok_in_window;
    }
  }
  void Merge(const Worker& other) {
    latency.Merge(other.latency);
    for (const auto& [code, n] : other.codes) codes[code] += n;
    http_errors += other.http_errors;
    in_window += other.in_window;
    ok_in_window += other.ok_in_window;
  }
};

// What one phase of calls looks like: closed loop with `concurrency` calls in
// flight, or open loop at `rps` with at most `concurrency` in flight; ends at
// `end` or after `limit` calls (0: no limit).
struct Phase {
  uint32_t concurrency = 1;
  double rps = 0;
  uint64_t limit = 0;
  Clock::time_point start;
  Clock::time_point end;
};

// One streamed call (DoStream), blocking; returns the gRPC code.
int CallStream(egress::v1::EgressService::Stub& stub,
               const egress::v1::DoRequest& request, Worker& w) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_timeout)));
  int http = 0;
  auto reader = stub.DoStream(&context, egress::v1::ForStream(request));
  egress::v1::DoStreamResponse chunk;
  while (reader->Read(&chunk)) {
    if (chunk.has_head()) http = chunk.head().status();
  }
  grpc::Status status = reader->Finish();
  if (status.ok() && http >= 500) ++w.http_errors;
  return status.error_code();
}

// DoStream: a thread per caller, each blocking on its stream.
Worker RunStreams(const std::vector<Stub>& stubs,
                  const egress::v1::DoRequest& request, const Phase& phase,
                  std::atomic<uint64_t>& done) {
  std::atomic<uint64_t> issued{0};
  std::vector<Worker> workers(phase.concurrency);
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < phase.concurrency; ++t) {
    threads.emplace_back([&, t] {
      Worker& w = workers[t];
      egress::v1::EgressService::Stub& stub = *stubs[t % stubs.size()];
      // Open loop: this sender's share of the rate, phase-shifted per sender.
      const double interval = phase.rps > 0 ? phase.concurrency / phase.rps : 0;
      auto intended =
          phase.start +
          std::chrono::duration_cast<Clock::duration>(
              std::chrono::duration<double>(interval * t / phase.concurrency));
      while (true) {
        if (phase.limit > 0 && issued.fetch_add(1) >= phase.limit) break;
        if (phase.rps > 0) {
          if (intended >= phase.end) break;
          std::this_thread::sleep_until(intended);
        } else if (Clock::now() >= phase.end) {
          break;
        }
        const auto sent = phase.rps > 0 ? intended : Clock::now();
        const int code = CallStream(stub, request, w);
        const auto now = Clock::now();
        w.latency.Record(
            std::chrono::duration<double, std::micro>(now - sent).count());
        w.Count(code, now, phase.end);
        ++done;
        if (phase.rps > 0) {
          intended += std::chrono::duration_cast<Clock::duration>(
              std::chrono::duration<double>(interval));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  Worker all;
  for (const Worker& w : workers) all.Merge(w);
  return all;
}

grpc::ByteBuffer EmptyMessage() {
  const grpc::Slice empty{std::string()};
  return grpc::ByteBuffer(&empty, 1);
}

// Do: calls through gRPC's callback API, so that a few gRPC threads drive any
// number of calls in flight (the way wrk drives nginx), instead of a blocked
// thread per call whose wake-ups would cost more CPU than the calls measured.
class UnaryRunner {
 public:
  // With `health` stubs (one per channel), calls Health/Check instead of Do.
  UnaryRunner(const std::vector<Stub>& stubs,
              const std::vector<std::unique_ptr<grpc::GenericStub>>& health,
              const egress::v1::DoRequest& request,
              const std::vector<std::string>& urls, const Phase& phase,
              std::atomic<uint64_t>& done)
      : request_(request), urls_(urls), phase_(phase), done_(done) {
    slots_.resize(phase.concurrency);
    for (size_t i = 0; i < slots_.size(); ++i) {
      slots_[i].request = request;
      slots_[i].stub = stubs[i % stubs.size()].get();
      if (!health.empty()) slots_[i].health = health[i % health.size()].get();
    }
  }

  Worker Run() {
    if (phase_.rps > 0) {
      RunOpenLoop();
    } else {
      for (Slot& slot : slots_) Kick(&slot);
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] {
      return in_flight_ == 0 && (phase_.rps > 0 || closed_ == slots_.size());
    });
    return std::move(stats_);
  }

 private:
  struct Slot {
    egress::v1::EgressService::Stub* stub = nullptr;
    grpc::GenericStub* health = nullptr;  // with --health
    egress::v1::DoRequest request;        // its URL changes with --urls_file
    std::unique_ptr<grpc::ClientContext> context;
    egress::v1::DoResponse response;
    grpc::ByteBuffer health_response;
    Clock::time_point sent;
  };

  // Open loop: a pacer issues calls at their scheduled times; a call that
  // finds every slot busy waits for one, and its latency still counts from
  // its scheduled time.
  void RunOpenLoop() {
    for (Slot& slot : slots_) free_.push_back(&slot);
    const auto interval = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(1 / phase_.rps));
    uint64_t issued = 0;
    for (auto intended = phase_.start; intended < phase_.end;
         intended += interval) {
      if (phase_.limit > 0 && issued++ >= phase_.limit) break;
      std::this_thread::sleep_until(intended);
      Slot* slot = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (!cv_.wait_until(lock, phase_.end, [&] { return !free_.empty(); }))
          break;
        slot = free_.back();
        free_.pop_back();
      }
      Issue(slot, intended);
    }
  }

  // Closed loop: issues the slot's next call, or retires the slot when the
  // phase is over. A call that fails at once may complete inline, inside
  // Issue: such re-kicks are queued here instead of recursing.
  void Kick(Slot* slot) {
    thread_local std::vector<Slot*>* pending = nullptr;
    if (pending != nullptr) {
      pending->push_back(slot);
      return;
    }
    std::vector<Slot*> local{slot};
    pending = &local;
    while (!local.empty()) {
      Slot* next = local.back();
      local.pop_back();
      const bool over =
          (phase_.limit > 0 && issued_.fetch_add(1) >= phase_.limit) ||
          Clock::now() >= phase_.end;
      if (over) {
        std::lock_guard<std::mutex> lock(mu_);
        ++closed_;
        cv_.notify_all();
        continue;
      }
      Issue(next, Clock::now());
    }
    pending = nullptr;
  }

  void Issue(Slot* slot, Clock::time_point sent) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++in_flight_;
    }
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(
        std::chrono::system_clock::now() +
        absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_timeout)));
    slot->response.Clear();
    slot->sent = sent;
    if (slot->health != nullptr) {
      slot->health_response.Clear();
      slot->health->UnaryCall(
          slot->context.get(), "/grpc.health.v1.Health/Check",
          grpc::StubOptions(), &empty_, &slot->health_response,
          [this, slot](grpc::Status status) { OnDone(slot, status); });
      return;
    }
    if (!urls_.empty()) {
      slot->request.set_url(urls_[next_url_.fetch_add(1) % urls_.size()]);
    }
    slot->stub->async()->Do(
        slot->context.get(), &slot->request, &slot->response,
        [this, slot](grpc::Status status) { OnDone(slot, status); });
  }

  void OnDone(Slot* slot, const grpc::Status& status) {
    const auto now = Clock::now();
    const double us =
        std::chrono::duration<double, std::micro>(now - slot->sent).count();
    const bool http_error = status.ok() && slot->response.status() >= 500;
    bool closed_loop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.latency.Record(us);
      stats_.Count(status.error_code(), now, phase_.end);
      if (http_error) ++stats_.http_errors;
      // Everything that touches this runner happens before in_flight_ drops:
      // an open loop's Run may return, and the runner go, as soon as it is 0.
      ++done_;
      closed_loop = phase_.rps <= 0;
      --in_flight_;
      if (!closed_loop) free_.push_back(slot);
      cv_.notify_all();
    }
    // A closed loop's Run waits for every slot to retire, which only Kick does.
    if (closed_loop) Kick(slot);
  }

  const egress::v1::DoRequest& request_;
  const std::vector<std::string>& urls_;
  std::atomic<uint64_t> next_url_{0};
  // An empty HealthCheckRequest (the service's overall status).
  const grpc::ByteBuffer empty_ = EmptyMessage();
  const Phase phase_;
  std::atomic<uint64_t>& done_;
  std::vector<Slot> slots_;
  std::atomic<uint64_t> issued_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  Worker stats_;             // guarded by mu_
  size_t in_flight_ = 0;     // guarded by mu_
  size_t closed_ = 0;        // slots retired (closed loop); guarded by mu_
  std::vector<Slot*> free_;  // idle slots (open loop); guarded by mu_
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Load generator for egress.v1.EgressService (see the file's header).");
  absl::ParseCommandLine(argc, argv);
  const bool health = absl::GetFlag(FLAGS_health);
  std::vector<std::string> urls;
  if (const std::string file = absl::GetFlag(FLAGS_urls_file); !file.empty()) {
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) urls.push_back(line);
    }
    if (urls.empty()) {
      std::fprintf(stderr, "egress_bench: --urls_file=%s: no URLs in it\n",
                   file.c_str());
      return 2;
    }
  }
  if (absl::GetFlag(FLAGS_url).empty() && urls.empty() && !health) {
    std::fprintf(stderr, "egress_bench: --url or --urls_file is required\n");
    return 2;
  }
  if (!urls.empty() && absl::GetFlag(FLAGS_stream)) {
    std::fprintf(stderr, "egress_bench: --urls_file is for Do, not --stream\n");
    return 2;
  }
  egress::v1::DoRequest request;
  request.set_method(absl::GetFlag(FLAGS_method));
  request.set_url(absl::GetFlag(FLAGS_url));
  request.set_body(std::string(absl::GetFlag(FLAGS_body_size), 'x'));
  for (const std::string& h : absl::GetFlag(FLAGS_header)) {
    const size_t colon = h.find(':');
    if (colon == std::string::npos) continue;
    auto* header = request.add_headers();
    header->set_name(h.substr(0, colon));
    header->set_value(
        std::string(absl::StripLeadingAsciiWhitespace(h.substr(colon + 1))));
  }

  const uint32_t concurrency =
      std::max<uint32_t>(1, absl::GetFlag(FLAGS_concurrency));
  const uint32_t channel_count =
      std::max<uint32_t>(1, absl::GetFlag(FLAGS_channels));
  std::vector<std::unique_ptr<egress::v1::EgressService::Stub>> stubs;
  std::vector<std::unique_ptr<grpc::GenericStub>> health_stubs;
  for (uint32_t i = 0; i < channel_count; ++i) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetInt("egress_bench.channel",
                static_cast<int>(i));  // distinct channels
    std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
        absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials(), args);
    stubs.push_back(egress::v1::EgressService::NewStub(channel));
    if (health)
      health_stubs.push_back(std::make_unique<grpc::GenericStub>(channel));
  }
  const bool stream = absl::GetFlag(FLAGS_stream);
  if (stream && health) {
    std::fprintf(stderr,
                 "egress_bench: --health is a unary call, not --stream\n");
    return 2;
  }

  const double rps = absl::GetFlag(FLAGS_rps);
  std::atomic<uint64_t> done{0};
  auto run = [&](Phase phase) {
    return stream ? RunStreams(stubs, request, phase, done)
                  : UnaryRunner(stubs, health_stubs, request, urls, phase, done)
                        .Run();
  };

  // Warm-up: unrecorded calls, closed loop.
  const auto warmup = absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_warmup));
  if (warmup.count() > 0) {
    Phase phase;
    phase.concurrency = concurrency;
    phase.start = Clock::now();
    phase.end = phase.start + warmup;
    run(phase);
    done = 0;
  }

  const int pid = absl::GetFlag(FLAGS_pid);
  const double cpu_before =
      pid > 0 ? egress::ProcCpuSeconds(std::to_string(pid)) : 0;
  Phase phase;
  phase.concurrency = concurrency;
  phase.rps = rps;
  phase.limit = absl::GetFlag(FLAGS_requests);
  phase.start = Clock::now();
  phase.end =
      phase.start + absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_duration));
  const auto start = phase.start;
  const bool progress = isatty(STDERR_FILENO) && !absl::GetFlag(FLAGS_json);
  std::atomic<bool> finished{false};
  std::thread reporter([&] {
    while (progress && !finished) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      const double s =
          std::chrono::duration<double>(Clock::now() - start).count();
      std::fprintf(stderr, "\r%8.1fs %10llu calls %10.0f calls/s", s,
                   static_cast<unsigned long long>(done.load()),
                   done.load() / s);
    }
  });
  Worker result = run(phase);
  finished = true;
  reporter.join();
  if (progress) std::fprintf(stderr, "\n");
  // Throughput over the run's window: --duration, or less when --requests
  // ended it sooner.
  const double seconds =
      std::min(std::chrono::duration<double>(Clock::now() - start).count(),
               std::chrono::duration<double>(phase.end - start).count());
  const double cpu_after =
      pid > 0 ? egress::ProcCpuSeconds(std::to_string(pid)) : 0;

  const Histogram& all = result.latency;
  std::map<int, uint64_t>& codes = result.codes;
  const uint64_t http_errors = result.http_errors;
  const uint64_t calls = all.count();
  const double throughput = result.in_window / seconds;
  // Answered calls only: a service that fails fast must not look fast.
  const double ok_throughput = result.ok_in_window / seconds;
  const double cpu_per_call_us =
      pid > 0 && calls > 0 ? (cpu_after - cpu_before) / calls * 1e6 : 0;
  std::vector<std::string> code_parts;
  for (const auto& [code, n] : codes) {
    code_parts.push_back(absl::StrFormat(
        "\"%s\": %d",
        absl::StatusCodeToString(static_cast<absl::StatusCode>(code)).c_str(),
        n));
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::printf(
        "{\"calls\": %llu, \"seconds\": %.3f, \"throughput\": %.1f, "
        "\"ok_throughput\": %.1f, "
        "\"latency_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, "
        "\"p999\": %.1f, "
        "\"max\": %.1f}, \"codes\": {%s}, \"http_5xx\": %llu, "
        "\"cpu_per_call_us\": %.2f}\n",
        static_cast<unsigned long long>(calls), seconds, throughput,
        ok_throughput, all.Percentile(50), all.Percentile(90),
        all.Percentile(99), all.Percentile(99.9), all.max(),
        absl::StrJoin(code_parts, ", ").c_str(),
        static_cast<unsigned long long>(http_errors), cpu_per_call_us);
  } else {
    std::printf("calls %llu in %.2f s: %.0f calls/s\n",
                static_cast<unsigned long long>(calls), seconds, throughput);
    std::printf(
        "latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n",
        all.Percentile(50), all.Percentile(90), all.Percentile(99),
        all.Percentile(99.9), all.max());
    std::printf("codes: {%s}  http 5xx: %llu\n",
                absl::StrJoin(code_parts, ", ").c_str(),
                static_cast<unsigned long long>(http_errors));
    if (pid > 0)
      std::printf("egressd CPU per call: %.1f us\n", cpu_per_call_us);
  }
  return codes.size() == 1 && codes.count(0) == 1 ? 0 : 1;
}
