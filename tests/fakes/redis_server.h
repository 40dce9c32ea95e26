// Debian's redis-server, started by a test on a loopback port (plain or TLS,
// with or without a password), stopped and started again on the same port.
//
// Usage:
//   RedisServer redis(dir);            // dir: the test's TEST_TMPDIR
//   ASSERT_TRUE(redis.Start());        // 127.0.0.1:redis.port()
//   redis.Stop(); redis.Start();       // an outage, then the same address
//
// scripts/setup.sh --tests installs redis-server. Thread safety: use from the
// test thread.
#ifndef EGRESS_TESTS_FAKES_REDIS_SERVER_H_
#define EGRESS_TESTS_FAKES_REDIS_SERVER_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace egress {

struct RedisServerOptions {
  std::string password;  // requirepass; empty: none
  std::string tls_cert;  // with tls_key: TLS only (no plain port)
  std::string tls_key;
  std::vector<std::string> extra_args;  // more redis-server flags
};

class RedisServer {
 public:
  explicit RedisServer(std::string dir, RedisServerOptions options = {});
  ~RedisServer() { Stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts it (on the port it had, after the first time) and waits until it
  // accepts connections; false when it did not within 10 s.
  bool Start();
  // SIGTERM and reaped; its data is not saved.
  void Stop();
  int port() const { return port_; }
  std::string address() const;
  const std::string& log_path() const { return log_; }

 private:
  std::string dir_;
  RedisServerOptions options_;
  std::string log_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace egress

#endif  // EGRESS_TESTS_FAKES_REDIS_SERVER_H_
