// http_floor: the HTTP-client floor of egressd's request path. cpp-httplib
// alone, on one thread, sends keep-alive GETs to one upstream for a while and
// prints the calls per second, the CPU per call and the latency percentiles as
// one JSON object (CPU from /proc/self/stat: the process is this one
// thread). egressd's own cost is its CPU per call less this floor and
// the gRPC floor (bench/compare).
//
//   http_floor --url=http://127.0.0.1:8080/ --duration=3
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "httplib.h"
#include "service/telemetry/proc_stat.h"

ABSL_FLAG(std::string, url, "", "The upstream's origin and path, http only");
ABSL_FLAG(double, duration, 3, "Seconds to send for (at most)");
ABSL_FLAG(int64_t, max_calls, 10'000'000, "Calls to send at most");

namespace {

double Percentile(std::vector<double>& values, double q) {
  if (values.empty()) return 0;
  const size_t at =
      static_cast<size_t>(q * static_cast<double>(values.size() - 1));
  std::nth_element(values.begin(), values.begin() + static_cast<long>(at),
                   values.end());
  return values[at];
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string url = absl::GetFlag(FLAGS_url);
  const std::string::size_type slash = url.find('/', url.find("://") + 3);
  if (url.rfind("http://", 0) != 0 || slash == std::string::npos) {
    std::fprintf(stderr, "http_floor: --url must be http://HOST:PORT/PATH\n");
    return 2;
  }
  httplib::Client client(url.substr(0, slash));
  client.set_keep_alive(true);
  const std::string path = url.substr(slash);

  using Steady = std::chrono::steady_clock;
  const auto end =
      Steady::now() +
      std::chrono::duration_cast<Steady::duration>(
          std::chrono::duration<double>(absl::GetFlag(FLAGS_duration)));
  const int64_t max_calls = absl::GetFlag(FLAGS_max_calls);
  std::vector<double> latency_us;
  latency_us.reserve(1 << 20);
  int64_t ok = 0, failed = 0;
  const double cpu_start = egress::ProcCpuSeconds("self");
  const auto start = Steady::now();
  auto now = start;
  while (now < end && ok + failed < max_calls) {
    httplib::Result result = client.Get(path);
    const auto done = Steady::now();
    if (result && result->status == 200) {
      ++ok;
      latency_us.push_back(
          std::chrono::duration<double, std::micro>(done - now).count());
    } else {
      ++failed;
    }
    now = done;
  }
  const double cpu = egress::ProcCpuSeconds("self") - cpu_start;
  const double seconds = std::chrono::duration<double>(now - start).count();
  const double p50 = Percentile(latency_us, 0.5);
  const double p99 = Percentile(latency_us, 0.99);
  std::printf(
      "%s\n",
      absl::StrFormat(
          R"({"calls":%d,"failed":%d,"throughput":%.1f,"cpu_per_call_us":%.2f,)"
          R"("latency_us":{"p50":%.1f,"p99":%.1f}})",
          ok, failed, seconds > 0 ? static_cast<double>(ok) / seconds : 0.0,
          ok > 0 ? cpu * 1e6 / static_cast<double>(ok) : 0.0, p50, p99)
          .c_str());
  return ok > 0 && failed == 0 ? 0 : 1;
}
