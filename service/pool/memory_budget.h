// MemoryBudget: the request and response bytes egressd holds across all calls
// (--max_buffered_bytes), so that a burst of large bodies gets
// RESOURCE_EXHAUSTED instead of the container's OOM kill.
//
// A call reserves its request body (and, for DoStream, the stream's bounded
// buffers) when it is admitted, and Do reserves its response body as it grows,
// ahead of each allocation. Reservations are BudgetLeases, given back when the
// call ends.
//
// Usage:
//   MemoryBudget budget(256 << 20);
//   BudgetLease lease(budget);
//   if (!lease.Grow(body.size())) return absl::ResourceExhaustedError(...);
//
// Thread safety: MemoryBudget is thread-safe (one atomic); a BudgetLease is
// used by one thread at a time.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace egress {

class MemoryBudget {
 public:
  // `max_bytes` 0: unlimited (still counted).
  explicit MemoryBudget(size_t max_bytes) : max_(max_bytes) {}
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // Reserves `n` bytes, or nothing and false when that would go over.
  bool TryReserve(size_t n);
  void Release(size_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }

  size_t used() const { return used_.load(std::memory_order_relaxed); }
  size_t max() const { return max_; }

  // RESOURCE_EXHAUSTED for `what` needing `n` more bytes.
  absl::Status Exhausted(const char* what, size_t n) const;

 private:
  const size_t max_;
  std::atomic<size_t> used_{0};
};

// Bytes one call holds of a MemoryBudget; all given back when destroyed.
class BudgetLease {
 public:
  // `budget` nullptr: no budget (every Grow succeeds).
  explicit BudgetLease(MemoryBudget* budget) : budget_(budget) {}
  ~BudgetLease() {
    if (budget_ != nullptr) budget_->Release(held_);
  }
  BudgetLease(const BudgetLease&) = delete;
  BudgetLease& operator=(const BudgetLease&) = delete;

  // Holds `n` more bytes, or returns false holding what it held.
  bool Grow(size_t n) {
    if (budget_ != nullptr && !budget_->TryReserve(n)) return false;
    held_ += n;
    return true;
  }
  // Gives back `n` of the bytes held (at most all of them).
  void Shrink(size_t n) {
    n = std::min(n, held_);
    if (budget_ != nullptr) budget_->Release(n);
    held_ -= n;
  }
  size_t held() const { return held_; }
  MemoryBudget* budget() const { return budget_; }

 private:
  MemoryBudget* const budget_;
  size_t held_ = 0;
};

// The cgroup's memory limit under `root` (v2 memory.max, else v1
// memory/memory.limit_in_bytes), or 0 when there is none.
size_t CgroupMemoryLimit(const std::string& root = "/sys/fs/cgroup");

// What egressd's limits may need: --max_buffered_bytes, a base for the
// process (gRPC, TLS, caches), a thread per --max_workers, and 64 KiB per
// --max_idle_connections (an idle TLS connection measured 62 KiB of RSS). A
// warning naming the settings when that cannot fit `memory_limit` (0:
// unknown, no warning).
std::optional<std::string> MemoryWarning(size_t max_buffered_bytes,
                                         size_t max_workers,
                                         size_t max_idle_connections,
                                         size_t memory_limit);

}  // namespace egress
