// EgressHarness: an in-process egressd on 127.0.0.1 (gRPC and metrics on port
// 0) and a real gRPC channel to it, for end-to-end tests.
//
// Usage (in a fixture):
//   EgressHarness egress;
//   egress.Start([](Config& c) { c.workers = 8; });
//   DoResponse response;
//   grpc::Status status = egress.Do(request, &response);
//   double reused = egress.Metric("egress_connections_reused_total");
//
// Thread safety: Do, stub(), MetricsText and Metric may be called from many
// threads; Start and Stop from the test thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "proto/egress/v1/egress.grpc.pb.h"
#include "proto/egress/v1/request_forms.h"
#include "service/server/egress_server.h"
#include "service/transport/dns_cache.h"

namespace egress {

class EgressHarness {
 public:
  ~EgressHarness() { Stop(); }

  // Starts egressd with the defaults (loopback, ephemeral ports, 2 s drain),
  // changed by `tweak`; stops a running one first. `resolver` answers names
  // other than IP literals (nullptr: the system resolver, for localhost only).
  //
  // The defaults allow loopback destinations on any port
  // (--allow_cidrs=127.0.0.0/8,::1/128 --allow_ports=*), since every test
  // upstream is on loopback, on an ephemeral port; a tweak may change that.
  // `credentials` secure the channel (nullptr: plaintext); with TLS the
  // server's certificate must name "localhost".
  void Start(const std::function<void(Config&)>& tweak = nullptr,
             Resolver* resolver = nullptr,
             std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);
  void Stop();

  grpc::Status Do(
      const egress::v1::DoRequest& request, egress::v1::DoResponse* response,
      std::chrono::milliseconds deadline = std::chrono::seconds(10));

  // The Prometheus text the service exposes now.
  std::string MetricsText();
  // The value of one series ("name" or "name{labels}"), -1 when absent.
  double Metric(const std::string& series);
  // The sum of every series of family `name`, whatever their labels; -1 when
  // it has none.
  double MetricSum(const std::string& name);

  // Sent as "authorization: Bearer <token>" with every call when not empty.
  void set_bearer_token(std::string token) { bearer_token_ = std::move(token); }

  EgressServer& server() { return *server_; }
  egress::v1::EgressService::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() { return channel_; }

 private:
  std::unique_ptr<EgressServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<egress::v1::EgressService::Stub> stub_;
  std::string bearer_token_;
};

// A request for `url` with `method`.
egress::v1::DoRequest MakeRequest(const std::string& method,
                                  const std::string& url);

}  // namespace egress
