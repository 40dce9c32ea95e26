#include "tests/fakes/redis_server.h"

#include <chrono>
#include <string>
#include <utility>

#include "tests/fakes/child_process.h"

namespace egress {

RedisServer::RedisServer(std::string dir, RedisServerOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

std::string RedisServer::address() const {
  return "127.0.0.1:" + std::to_string(port_);
}

bool RedisServer::Start() {
  if (pid_ > 0) return true;
  if (port_ == 0) port_ = FreeLoopbackPort();
  log_ = dir_ + "/redis-" + std::to_string(port_) + ".log";
  std::vector<std::string> argv = {"/usr/bin/redis-server",
                                   "--bind",
                                   "127.0.0.1",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--dir",
                                   dir_,
                                   "--logfile",
                                   "",
                                   "--protected-mode",
                                   "no"};
  const std::string port = std::to_string(port_);
  if (options_.tls_cert.empty()) {
    argv.insert(argv.end(), {"--port", port});
  } else {
    argv.insert(argv.end(),
                {"--port", "0", "--tls-port", port, "--tls-cert-file",
                 options_.tls_cert, "--tls-key-file", options_.tls_key,
                 "--tls-auth-clients", "no"});
  }
  if (!options_.password.empty()) {
    argv.insert(argv.end(), {"--requirepass", options_.password});
  }
  argv.insert(argv.end(), options_.extra_args.begin(),
              options_.extra_args.end());
  pid_ = SpawnChild(argv, log_, /*stdout_too=*/true);
  if (pid_ <= 0) return false;
  return WaitForLoopbackPort(port_, std::chrono::seconds(10));
}

void RedisServer::Stop() {
  if (pid_ <= 0) return;
  StopChild(pid_);
  pid_ = -1;
}

}  // namespace egress
