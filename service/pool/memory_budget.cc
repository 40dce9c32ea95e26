#include "service/pool/memory_budget.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "service/base/defaults.h"
#include "service/base/error_details.h"

namespace egress {

bool MemoryBudget::TryReserve(size_t n) {
  size_t used = used_.load(std::memory_order_relaxed);
  do {
    if (max_ != 0 && (n > max_ || used > max_ - n)) return false;
  } while (
      !used_.compare_exchange_weak(used, used + n, std::memory_order_relaxed));
  return true;
}

absl::Status MemoryBudget::Exhausted(const char* what, size_t n) const {
  return WithRetryDelay(
      WithReason(absl::ResourceExhaustedError(absl::StrFormat(
                     "%s needs %d more bytes of --max_buffered_bytes=%d, of "
                     "which calls in flight hold %d; retry with backoff",
                     what, n, max_, used())),
                 ErrorReason::kMemoryBudget,
                 {{"limit", absl::StrCat("--max_buffered_bytes=", max_)}}),
      defaults::kBusyRetryDelay);
}

namespace {

// A number of bytes from the first line of `path`; 0 for "max", a missing
// file or anything else.
size_t ReadLimit(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return 0;
  size_t bytes = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &bytes)) return 0;
  // cgroup v1 says "no limit" with a number near 2^63.
  return bytes >= (size_t{1} << 62) ? 0 : bytes;
}

constexpr size_t kBaseBytes = size_t{64} << 20;
constexpr size_t kPerWorkerBytes = size_t{128} << 10;
// An idle TLS keep-alive connection: its SSL_CTX, SSL, httplib client and
// buffers (1,007 idle nginx TLS connections: +63 MiB of RSS).
constexpr size_t kPerIdleConnectionBytes = size_t{64} << 10;

}  // namespace

size_t CgroupMemoryLimit(const std::string& root) {
  if (size_t v2 = ReadLimit(root + "/memory.max")) return v2;
  return ReadLimit(root + "/memory/memory.limit_in_bytes");
}

std::optional<std::string> MemoryWarning(size_t max_buffered_bytes,
                                         size_t max_workers,
                                         size_t max_idle_connections,
                                         size_t memory_limit) {
  if (memory_limit == 0) return std::nullopt;
  constexpr double kMiB = 1 << 20;
  if (max_buffered_bytes == 0) {
    return absl::StrFormat(
        "--max_buffered_bytes=0 (unlimited) under a memory limit of %.0f MiB: "
        "a burst of large bodies can get egressd killed; set a budget",
        memory_limit / kMiB);
  }
  const size_t need = max_buffered_bytes + kBaseBytes +
                      max_workers * kPerWorkerBytes +
                      max_idle_connections * kPerIdleConnectionBytes;
  if (need <= memory_limit) return std::nullopt;
  return absl::StrFormat(
      "limits may need %.0f MiB (--max_buffered_bytes %.0f MiB + %d "
      "--max_workers x 128 KiB + %d --max_idle_connections x 64 KiB + 64 MiB "
      "for the process) but the memory limit is %.0f MiB: lower "
      "--max_buffered_bytes, --max_workers or --max_idle_connections",
      need / kMiB, max_buffered_bytes / kMiB, max_workers, max_idle_connections,
      memory_limit / kMiB);
}

}  // namespace egress
