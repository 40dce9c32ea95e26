// One HTTP/2 attack against a running egressd (or anything on a gRPC port),
// with what it cost the process: resident memory before, at the peak and
// after, and CPU seconds. For the figures in docs/security.md, measured the
// same way for every build and every defence compared:
//
//   bazel run -c opt //bench:h2_abuse -- --port=50051 --attack=continuation
//       --pid=$(pidof egressd) --amount=536870912
//
// Attacks: continuation (bytes), rapid-reset (pairs), settings, ping (frames),
// tiny-fields (bytes of 100,000-field header blocks). --repeat=N reconnects
// N times. Loopback only.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "service/telemetry/proc_stat.h"
#include "tests/fakes/child_process.h"
#include "tests/fakes/h2_attacks.h"

ABSL_FLAG(int, port, 0, "gRPC port on 127.0.0.1");
ABSL_FLAG(int, pid, 0, "process to measure (its /proc)");
ABSL_FLAG(std::string, attack, "continuation", "attack name");
ABSL_FLAG(uint64_t, amount, 512ull << 20, "bytes or frames to send");
ABSL_FLAG(int, limit_s, 60, "stop after this many seconds");
ABSL_FLAG(int, settle_ms, 2000, "wait before reading memory after");
ABSL_FLAG(int, repeat, 1,
          "run the attack this many times, each on a new connection (an "
          "attacker that reconnects when closed)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int pid = absl::GetFlag(FLAGS_pid);
  const std::string pid_text = std::to_string(pid);
  const long rss_before = egress::ProcStatusKib(pid, "VmRSS");
  const double cpu_before = egress::ProcCpuSeconds(pid_text);
  std::atomic<bool> done{false};
  std::atomic<long> peak{rss_before};
  std::thread sampler([&] {
    while (!done.load()) {
      const long rss = egress::ProcStatusKib(pid, "VmRSS");
      if (rss > peak.load()) peak.store(rss);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  egress::AttackResult r;
  for (int i = 0; i < absl::GetFlag(FLAGS_repeat); ++i) {
    const egress::AttackResult one = egress::RunAttack(
        absl::GetFlag(FLAGS_attack), absl::GetFlag(FLAGS_port),
        absl::GetFlag(FLAGS_amount),
        std::chrono::seconds(absl::GetFlag(FLAGS_limit_s)));
    r.connected = one.connected;
    r.closed = one.closed;
    r.sent += one.sent;
    r.seconds += one.seconds;
  }
  std::this_thread::sleep_for(
      std::chrono::milliseconds(absl::GetFlag(FLAGS_settle_ms)));
  done.store(true);
  sampler.join();
  // What the attack cost, its aftermath (the settle) included.
  const double cpu_attack = egress::ProcCpuSeconds(pid_text) - cpu_before;
  const long rss_after = egress::ProcStatusKib(pid, "VmRSS");
  std::printf(
      "attack=%s connected=%d closed=%d sent=%llu seconds=%.2f "
      "rss_before_mib=%.1f rss_peak_mib=%.1f rss_after_mib=%.1f "
      "cpu_s=%.2f alive=%d\n",
      absl::GetFlag(FLAGS_attack).c_str(), r.connected, r.closed,
      static_cast<unsigned long long>(r.sent), r.seconds, rss_before / 1024.0,
      peak.load() / 1024.0, rss_after / 1024.0, cpu_attack,
      egress::ProcStatusKib(pid, "VmRSS") > 0);
  return 0;
}
