#include "service/telemetry/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "service/telemetry/proc_stat.h"

namespace egress {
namespace {

prometheus::MetricFamily Family(const char* name, const char* help,
                                prometheus::MetricType type, double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

double BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") {
      double btime = 0;
      in >> btime;
      return btime;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

double OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  double n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;  // the directory's own descriptor
}

}  // namespace

std::vector<prometheus::MetricFamily> CollectProcessMetrics() {
  using prometheus::MetricType;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  std::vector<prometheus::MetricFamily> out;
  const std::vector<std::string> stat = ProcStatFields("self");
  if (stat.size() > 21) {
    // utime (14), stime (15), starttime (22), vsize (23), rss (24), 1-based.
    const double cpu = (std::stod(stat[11]) + std::stod(stat[12])) / ticks;
    out.push_back(Family("process_cpu_seconds_total",
                         "Total user and system CPU time spent in seconds.",
                         MetricType::Counter, cpu));
    out.push_back(Family(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        MetricType::Gauge, BootTimeSeconds() + std::stod(stat[19]) / ticks));
    out.push_back(Family("process_virtual_memory_bytes",
                         "Virtual memory size in bytes.", MetricType::Gauge,
                         std::stod(stat[20])));
    out.push_back(Family("process_resident_memory_bytes",
                         "Resident memory size in bytes.", MetricType::Gauge,
                         std::stod(stat[21]) * page));
  }
  out.push_back(Family("process_open_fds", "Number of open file descriptors.",
                       MetricType::Gauge, OpenFds()));
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  out.push_back(Family("process_max_fds",
                       "Maximum number of open file descriptors.",
                       MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  return out;
}

}  // namespace egress
