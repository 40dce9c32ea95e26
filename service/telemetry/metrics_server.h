// MetricsServer: serves the Prometheus text format of what `collect` returns on
// http://<address>/metrics, from its own thread.
//
// It uses cpp-httplib (already the service's HTTP library) rather than
// prometheus-cpp's civetweb Exposer, whose listener polls in 2 s quanta and so
// holds every shutdown for up to 2 s.
//
// Usage:
// clang-format off
//   auto server = MetricsServer::Start("0.0.0.0:9464",
//                                      [&] { return metrics.Collect(); });
//   int port = (*server)->port();
// clang-format on
//
// Thread safety: Start and the destructor from one thread; scrapes are served
// concurrently, so `collect` must be thread-safe.
#pragma once

#include <prometheus/metric_family.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace egress {

class MetricsServer {
 public:
  // Binds `address` ("host:port", "[::]:port"; port 0 picks one) and serves.
  using Collect = std::function<std::vector<prometheus::MetricFamily>()>;
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& address, Collect collect);
  ~MetricsServer();  // stops serving and joins the thread

  int port() const { return port_; }

 private:
  MetricsServer() = default;

  Collect collect_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Splits "host:port" or "[v6]:port" into its parts. Errors name the address.
absl::Status SplitHostPort(const std::string& address, std::string& host,
                           int& port);

}  // namespace egress
