// MetricsServer: serves what its collector returns on /metrics, and a server
// stopped at any moment after Start stops.
#include "service/telemetry/metrics_server.h"

#include <httplib.h>
#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace egress {
namespace {

std::vector<prometheus::MetricFamily> OneCounter() {
  prometheus::MetricFamily family;
  family.name = "egress_test_total";
  family.help = "A counter for the test.";
  family.type = prometheus::MetricType::Counter;
  prometheus::ClientMetric metric;
  metric.counter.value = 7;
  family.metric.push_back(metric);
  return {family};
}

TEST(MetricsServerTest, ServesTheCollectorsFamiliesAsPrometheusText) {
  auto server = MetricsServer::Start("127.0.0.1:0", OneCounter);
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  httplib::Result res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("egress_test_total 7"), std::string::npos)
      << res->body;
}

TEST(MetricsServerTest, AServerDestroyedRightAfterStartStops) {
  // httplib's stop() is a no-op until the listen loop runs: before Start
  // waited for it, one of these could accept forever and hang the join (a
  // conformance_test run under scripts/flake-hunt did). A hang here ends in
  // the test's timeout.
  for (int i = 0; i < 200; ++i) {
    auto server = MetricsServer::Start("127.0.0.1:0", OneCounter);
    ASSERT_TRUE(server.ok()) << server.status();
  }
}

TEST(MetricsServerTest, AnAddressInUseIsAnErrorNamingIt) {
  auto first = MetricsServer::Start("127.0.0.1:0", OneCounter);
  ASSERT_TRUE(first.ok());
  const std::string address = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsServer::Start(address, OneCounter);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(address), std::string::npos);
}

}  // namespace
}  // namespace egress
