// ProcStat: the fields of /proc/<pid>/stat, for the process metrics and for
// the benchmark tools that measure egressd's CPU from outside.
//
//   double cpu = ProcCpuSeconds("1234");  // utime + stime
//
// Thread safety: pure functions of /proc; safe from any thread.
#pragma once

#include <string>
#include <vector>

namespace egress {

// The fields after the command name of /proc/`pid`/stat ("self" or a number):
// [0] is field 3 (state), [11] utime, [12] stime. Empty when unreadable.
std::vector<std::string> ProcStatFields(const std::string& pid);

// The CPU time (user + system) of process `pid` in seconds, or -1.
double ProcCpuSeconds(const std::string& pid);

}  // namespace egress
