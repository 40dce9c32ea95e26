#include "tests/integration/egress_harness.h"

#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace egress {

void EgressHarness::Start(
    const std::function<void(Config&)>& tweak, Resolver* resolver,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  Stop();
  Config config;
  config.front.listen = "127.0.0.1:0";
  config.metrics_listen = "127.0.0.1:0";
  config.drain_timeout = std::chrono::seconds(2);
  config.allow_cidrs = "127.0.0.0/8,::1/128";
  config.allow_ports = "*";
  if (tweak) tweak(config);
  auto server = EgressServer::Start(config, RealClock::Get(), resolver);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  const bool tls = credentials != nullptr;
  // The test certificates name "localhost"; connecting to 127.0.0.1 with that
  // name checked keeps gRPC's own resolver (c-ares) out of the tests.
  if (tls) args.SetSslTargetNameOverride("localhost");
  channel_ = grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", server_->grpc_port()),
      tls ? credentials : grpc::InsecureChannelCredentials(), args);
  stub_ = egress::v1::EgressService::NewStub(channel_);
}

void EgressHarness::Stop() {
  if (server_) server_->Shutdown(std::chrono::seconds(2));
  stub_.reset();
  channel_.reset();
  server_.reset();
}

grpc::Status EgressHarness::Do(const egress::v1::DoRequest& request,
                               egress::v1::DoResponse* response,
                               std::chrono::milliseconds deadline) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  if (!bearer_token_.empty()) {
    context.AddMetadata("authorization", "Bearer " + bearer_token_);
  }
  return stub_->Do(&context, request, response);
}

std::string EgressHarness::MetricsText() {
  httplib::Client client("127.0.0.1", server_->metrics_port());
  auto result = client.Get("/metrics");
  EXPECT_TRUE(result) << "metrics endpoint did not answer";
  return result ? result->body : "";
}

double EgressHarness::Metric(const std::string& series) {
  const std::string text = MetricsText();
  const std::string prefix = series + " ";
  const size_t at = text.find("\n" + prefix);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + 1 + prefix.size()));
}

double EgressHarness::MetricSum(const std::string& name) {
  const std::string text = MetricsText();
  double sum = 0;
  bool found = false;
  size_t at = 0;
  while ((at = text.find("\n" + name, at)) != std::string::npos) {
    at += 1 + name.size();
    if (text[at] != ' ' && text[at] != '{') continue;  // a longer name
    const size_t value = text.find(' ', text.find_first_of(" }", at));
    sum += std::stod(text.substr(value + 1));
    found = true;
  }
  return found ? sum : -1;
}

egress::v1::DoRequest MakeRequest(const std::string& method,
                                  const std::string& url) {
  egress::v1::DoRequest request;
  request.set_method(method);
  request.set_url(url);
  return request;
}

}  // namespace egress
