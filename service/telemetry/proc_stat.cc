#include "service/telemetry/proc_stat.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

namespace egress {

std::vector<std::string> ProcStatFields(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string line;
  std::getline(in, line);
  std::vector<std::string> fields;
  const size_t close = line.rfind(')');  // the name may contain spaces
  if (close == std::string::npos) return fields;
  std::istringstream rest(line.substr(close + 2));
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

double ProcCpuSeconds(const std::string& pid) {
  const std::vector<std::string> f = ProcStatFields(pid);
  if (f.size() < 13) return -1;
  return (std::stod(f[11]) + std::stod(f[12])) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace egress
