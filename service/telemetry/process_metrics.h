// ProcessMetrics: the process_* series that dashboards expect from any exporter
// (resident memory, CPU seconds, open file descriptors, start time), read from
// /proc at scrape time, not kept up to date in between.
//
// Usage:
//   std::vector<prometheus::MetricFamily> families = CollectProcessMetrics();
//
// Thread safety: a pure function of /proc; safe from any thread.
#pragma once

#include <prometheus/metric_family.h>

#include <vector>

namespace egress {

// process_resident_memory_bytes, process_virtual_memory_bytes,
// process_cpu_seconds_total, process_open_fds, process_max_fds,
// process_start_time_seconds.
std::vector<prometheus::MetricFamily> CollectProcessMetrics();

}  // namespace egress
