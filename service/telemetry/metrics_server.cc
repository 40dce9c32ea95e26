#include "service/telemetry/metrics_server.h"

#include <httplib.h>
#include <prometheus/text_serializer.h>

#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace egress {

absl::Status SplitHostPort(const std::string& address, std::string& host,
                           int& port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\" is not host:port"));
  }
  host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\" has no valid port"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, Collect collect) {
  std::string host;
  int port = 0;
  absl::Status split = SplitHostPort(address, host, port);
  if (!split.ok()) return split;

  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->collect_ = std::move(collect);
  s->server_ = std::make_unique<httplib::Server>();
  s->server_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  // SO_REUSEADDR but not httplib's default SO_REUSEPORT: a port another
  // process (a forgotten egressd) listens on is an error at start, not a
  // port whose scrapes two processes answer in turn.
  s->server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  const Collect* collector = &s->collect_;
  s->server_->Get(
      "/metrics", [collector](const httplib::Request&, httplib::Response& res) {
        std::ostringstream out;
        prometheus::TextSerializer().Serialize(out, (*collector)());
        res.set_content(out.str(), "text/plain; version=0.0.4; charset=utf-8");
      });
  s->port_ = port == 0 ? s->server_->bind_to_any_port(host)
                       : (s->server_->bind_to_port(host, port) ? port : -1);
  if (s->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address, " (address in use?)"));
  }
  httplib::Server* server = s->server_.get();
  s->thread_ = std::thread([server] { server->listen_after_bind(); });
  // httplib's stop() does nothing until the listen loop has started: a server
  // stopped right after Start would otherwise accept forever, and the
  // destructor's join would never return (found by scripts/flake-hunt).
  server->wait_until_ready();
  return s;
}

MetricsServer::~MetricsServer() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace egress
