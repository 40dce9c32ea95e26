// RedisConnection: one connection to a Redis server, for the rate limits
// shared across replicas (shared_rate_limits.h). Commands are written and
// replies read by hiredis' protocol functions (redisFormatCommandArgv and its
// reply reader); the socket, TLS (OpenSSL) and every wait are this unit's, so
// that each exchange is bounded by a deadline, TLS included (Debian 12's
// hiredis 0.14 has no TLS).
//
// Run() sends its commands in one write (a pipeline) and reads one reply for
// each, all by the deadline; any failure (a timeout, a refused connection, a
// reply that is not RESP, more than kMaxReplyBytes without a whole reply)
// closes the connection and says what it was. Connect() resolves the name,
// connects, does the TLS handshake and AUTH: it may block in getaddrinfo, so
// only a background thread calls it.
//
// Usage:
//   RedisConnection redis(options);           // not connected yet
//   if (redis.Connect(deadline).ok())
//     auto replies = redis.Run({{"PING"}}, deadline);
//
// Thread safety: not thread-safe; its owner serializes the calls.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "service/base/clock.h"
#include "service/base/defaults.h"
#include "service/base/secret_file.h"

namespace egress {

struct RedisOptions {
  std::string address;  // host:port ([v6]:port); empty: no Redis
  bool tls = false;
  std::string
      tls_ca;  // PEM roots for the server's certificate; else the system's
  std::string user;  // ACL user for AUTH (with the password); empty: "default"
  std::string password_file;  // its first line is the password; empty: no AUTH
  // The longest a call waits on Redis (a lock and one round trip); slower
  // and Redis counts as unreachable.
  std::chrono::nanoseconds timeout = defaults::kRedisTimeout;
  std::string key_prefix = defaults::kRedisKeyPrefix;  // keys: "<prefix>:..."
  uint32_t fallback_replicas = 0;  // 0: the replicas last seen in Redis
};

struct RedisReply {
  enum class Type { kString, kArray, kInteger, kNil, kStatus, kError };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;  // kString, kStatus, kError
  std::vector<RedisReply> elements;
};

class RedisConnection {
 public:
  // Replies larger than this are refused (ours are a few integers).
  static constexpr size_t kMaxReplyBytes = 1 << 20;

  // Checks the options (the address's form, the CA and password files) and
  // makes the TLS context; errors name the flag.
  static absl::StatusOr<std::unique_ptr<RedisConnection>> Create(
      const RedisOptions& options);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Connects (closing any connection first), with TLS and AUTH when set.
  absl::Status Connect(MonoTime deadline);
  bool connected() const { return fd_ >= 0; }
  void Close();

  // Sends `commands` (each its arguments) and reads their replies, by
  // `deadline`. A reply of type kError is a reply, not a failure.
  absl::StatusOr<std::vector<RedisReply>> Run(
      const std::vector<std::vector<std::string>>& commands, MonoTime deadline);

  const std::string& address() const { return options_.address; }

 private:
  explicit RedisConnection(RedisOptions options)
      : options_(std::move(options)) {}
  absl::Status Fail(absl::Status status);
  absl::Status WriteAll(const std::string& bytes, MonoTime deadline);
  // Reads what is there (waiting for something by `deadline`) into `out`.
  absl::Status ReadSome(std::string* out, MonoTime deadline);
  absl::Status Wait(bool for_write, MonoTime deadline);

  const RedisOptions options_;
  std::string host_;
  std::string port_;
  std::shared_ptr<SecretFile> password_;
  SSL_CTX* ssl_ctx_ = nullptr;  // with --redis_tls
  SSL* ssl_ = nullptr;          // while connected over TLS
  int fd_ = -1;
};

}  // namespace egress
