// MemoryBudget and BudgetLease: reservations never go over, every byte comes
// back; the cgroup limit and the start-up warning.
#include "service/pool/memory_budget.h"

#include <sys/stat.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace egress {
namespace {

using ::testing::HasSubstr;

TEST(MemoryBudgetTest, ReservationsNeverGoOverAndComeBack) {
  MemoryBudget budget(100);
  {
    BudgetLease a(&budget);
    EXPECT_TRUE(a.Grow(60));
    BudgetLease b(&budget);
    EXPECT_FALSE(b.Grow(41));  // would be 101
    EXPECT_TRUE(b.Grow(40));
    EXPECT_FALSE(b.Grow(1));
    EXPECT_EQ(budget.used(), 100u);
    EXPECT_EQ(b.held(), 40u);
  }
  EXPECT_EQ(budget.used(), 0u);
  BudgetLease c(&budget);
  EXPECT_FALSE(c.Grow(101));
  EXPECT_FALSE(c.Grow(~size_t{0}));  // no overflow
  EXPECT_THAT(std::string(budget.Exhausted("the request", 7).message()),
              HasSubstr("the request needs 7 more bytes of "
                        "--max_buffered_bytes=100, of which calls in flight "
                        "hold 0"));
}

TEST(MemoryBudgetTest, UnlimitedStillCountsAndNoBudgetAlwaysGrows) {
  MemoryBudget unlimited(0);
  BudgetLease a(&unlimited);
  EXPECT_TRUE(a.Grow(size_t{1} << 40));
  EXPECT_EQ(unlimited.used(), size_t{1} << 40);
  BudgetLease none(nullptr);
  EXPECT_TRUE(none.Grow(123));
}

TEST(MemoryBudgetTest, ConcurrentLeasesStayWithinTheBudget) {
  MemoryBudget budget(1000);
  std::atomic<size_t> peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        BudgetLease lease(&budget);
        if (lease.Grow(300)) {
          size_t used = budget.used();
          size_t seen = peak.load();
          while (used > seen && !peak.compare_exchange_weak(seen, used)) {
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(peak.load(), 1000u);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(MemoryBudgetTest, CgroupLimitV2ThenV1) {
  const std::string root = ::testing::TempDir() + "/cgroup";
  mkdir(root.c_str(), 0755);
  mkdir((root + "/memory").c_str(), 0755);
  EXPECT_EQ(CgroupMemoryLimit(root), 0u);  // neither file
  std::ofstream(root + "/memory/memory.limit_in_bytes")
      << "9223372036854771712\n";
  EXPECT_EQ(CgroupMemoryLimit(root), 0u);  // v1's "no limit"
  std::ofstream(root + "/memory/memory.limit_in_bytes") << "268435456\n";
  EXPECT_EQ(CgroupMemoryLimit(root), 268435456u);
  std::ofstream(root + "/memory.max") << "max\n";
  EXPECT_EQ(CgroupMemoryLimit(root), 268435456u);  // v2 says none: v1's
  std::ofstream(root + "/memory.max") << "536870912\n";
  EXPECT_EQ(CgroupMemoryLimit(root), 536870912u);
}

TEST(MemoryBudgetTest, WarnsWhenTheLimitsCannotFit) {
  constexpr size_t kMiB = 1 << 20;
  // The shipped configuration fits the Deployment's 512 MiB: 256 + 1024 x
  // 128 KiB + 512 idle connections x 64 KiB + 64.
  EXPECT_FALSE(MemoryWarning(256 * kMiB, 1024, 512, 512 * kMiB).has_value());
  EXPECT_FALSE(MemoryWarning(256 * kMiB, 4096, 4096, 0).has_value());
  std::optional<std::string> warning =
      MemoryWarning(256 * kMiB, 4096, 4096, 512 * kMiB);
  ASSERT_TRUE(warning.has_value());
  EXPECT_THAT(*warning, HasSubstr("limits may need 1088 MiB"));
  EXPECT_THAT(*warning, HasSubstr("4096 --max_idle_connections x 64 KiB"));
  EXPECT_THAT(*warning, HasSubstr("memory limit is 512 MiB"));
  // The default idle bound alone does not fit with the Deployment's others.
  EXPECT_TRUE(MemoryWarning(256 * kMiB, 1024, 4096, 512 * kMiB).has_value());
  warning = MemoryWarning(0, 16, 0, 512 * kMiB);
  ASSERT_TRUE(warning.has_value());
  EXPECT_THAT(*warning, HasSubstr("--max_buffered_bytes=0 (unlimited)"));
}

}  // namespace
}  // namespace egress
