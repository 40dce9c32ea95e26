#include "service/admission/redis_connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace egress {
namespace {

std::string OpensslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no detail";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

bool IsIpLiteral(const std::string& host) {
  in6_addr v6;
  in_addr v4;
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

RedisReply Convert(const redisReply& reply) {
  RedisReply out;
  switch (reply.type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      break;
    default:
      out.type = RedisReply::Type::kNil;
      break;
  }
  out.integer = reply.integer;
  if (reply.str != nullptr) out.str.assign(reply.str, reply.len);
  for (size_t i = 0; i < reply.elements; ++i) {
    if (reply.element[i] != nullptr) {
      out.elements.push_back(Convert(*reply.element[i]));
    }
  }
  return out;
}

struct ReaderDeleter {
  void operator()(redisReader* reader) const { redisReaderFree(reader); }
};

}  // namespace

absl::StatusOr<std::unique_ptr<RedisConnection>> RedisConnection::Create(
    const RedisOptions& options) {
  std::unique_ptr<RedisConnection> redis(new RedisConnection(options));
  const std::string& address = options.address;
  size_t colon = address.rfind(':');
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 != colon)
      colon = std::string::npos;
    if (colon != std::string::npos) redis->host_ = address.substr(1, close - 1);
  } else if (colon != std::string::npos) {
    redis->host_ = address.substr(0, colon);
  }
  uint32_t port = 0;
  if (colon == std::string::npos || redis->host_.empty() ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port == 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--redis: \"", address, "\" is not host:port (or [IPv6]:port)"));
  }
  redis->port_ = std::to_string(port);
  if (!options.password_file.empty()) {
    absl::StatusOr<std::shared_ptr<SecretFile>> password =
        SecretFile::Open(options.password_file, "--redis_password_file");
    if (!password.ok()) return password.status();
    redis->password_ = *std::move(password);
  } else if (!options.user.empty()) {
    return absl::InvalidArgumentError(
        "--redis_user needs --redis_password_file (AUTH takes both)");
  }
  if (!options.tls_ca.empty() && !options.tls) {
    return absl::InvalidArgumentError("--redis_tls_ca needs --redis_tls");
  }
  if (options.tls) {
    redis->ssl_ctx_ = SSL_CTX_new(TLS_client_method());
    if (redis->ssl_ctx_ == nullptr) {
      return absl::InternalError("--redis_tls: " + OpensslError());
    }
    SSL_CTX_set_min_proto_version(redis->ssl_ctx_, TLS1_2_VERSION);
    SSL_CTX_set_verify(redis->ssl_ctx_, SSL_VERIFY_PEER, nullptr);
    const bool loaded =
        options.tls_ca.empty()
            ? SSL_CTX_set_default_verify_paths(redis->ssl_ctx_) == 1
            : SSL_CTX_load_verify_locations(
                  redis->ssl_ctx_, options.tls_ca.c_str(), nullptr) == 1;
    if (!loaded) {
      return absl::InvalidArgumentError(absl::StrCat(
          options.tls_ca.empty() ? "--redis_tls: the system's CA store"
                                 : "--redis_tls_ca: " + options.tls_ca,
          " could not be loaded: ", OpensslError()));
    }
  }
  return redis;
}

RedisConnection::~RedisConnection() {
  Close();
  if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
}

void RedisConnection::Close() {
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

absl::Status RedisConnection::Fail(absl::Status status) {
  Close();
  return absl::Status(status.code(), absl::StrCat("redis ", options_.address,
                                                  ": ", status.message()));
}

absl::Status RedisConnection::Wait(bool for_write, MonoTime deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) {
      return absl::DeadlineExceededError("no answer in time");
    }
    pollfd pfd{fd_, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    // Rounded up, so that a wait of under a millisecond still waits.
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()) + 1);
    if (ready > 0) return absl::OkStatus();
    if (ready < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("poll: ", strerror(errno)));
    }
  }
}

absl::Status RedisConnection::Connect(MonoTime deadline) {
  Close();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host_.c_str(), port_.c_str(), &hints, &found);
      rc != 0) {
    return Fail(absl::UnavailableError(
        absl::StrCat("cannot resolve ", host_, ": ", gai_strerror(rc))));
  }
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) {
    fd_ = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   a->ai_protocol);
    if (fd_ < 0) {
      last_error = strerror(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::connect(fd_, a->ai_addr, a->ai_addrlen) != 0 &&
        errno != EINPROGRESS) {
      last_error = strerror(errno);
      Close();
      continue;
    }
    if (absl::Status waited = Wait(true, deadline); !waited.ok()) {
      last_error = "connect timed out";
      Close();
      continue;
    }
    int error = 0;
    socklen_t len = sizeof(error);
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) {
      last_error = strerror(error);
      Close();
    }
  }
  freeaddrinfo(found);
  if (fd_ < 0) {
    return Fail(absl::UnavailableError("cannot connect: " + last_error));
  }
  if (ssl_ctx_ != nullptr) {
    ssl_ = SSL_new(ssl_ctx_);
    SSL_set_fd(ssl_, fd_);
    if (IsIpLiteral(host_)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host_.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl_, host_.c_str());
      SSL_set1_host(ssl_, host_.c_str());
    }
    for (;;) {
      ERR_clear_error();
      const int rc = SSL_connect(ssl_);
      if (rc == 1) break;
      const int error = SSL_get_error(ssl_, rc);
      if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
        const long verify = SSL_get_verify_result(ssl_);
        return Fail(absl::UnavailableError(
            verify != X509_V_OK
                ? absl::StrCat("TLS: the server's certificate: ",
                               X509_verify_cert_error_string(verify))
                : "TLS handshake: " + OpensslError()));
      }
      if (absl::Status waited = Wait(error == SSL_ERROR_WANT_WRITE, deadline);
          !waited.ok()) {
        return Fail(absl::DeadlineExceededError("TLS handshake timed out"));
      }
    }
  }
  if (password_ != nullptr) {
    absl::StatusOr<std::string> password = password_->Value();
    if (!password.ok()) return Fail(password.status());
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.user.empty()) auth.push_back(options_.user);
    auth.push_back(*password);
    absl::StatusOr<std::vector<RedisReply>> replies = Run({auth}, deadline);
    if (!replies.ok()) return replies.status();
    if ((*replies)[0].type == RedisReply::Type::kError) {
      return Fail(
          absl::PermissionDeniedError("AUTH refused: " + (*replies)[0].str));
    }
  }
  return absl::OkStatus();
}

absl::Status RedisConnection::WriteAll(const std::string& bytes,
                                       MonoTime deadline) {
  size_t done = 0;
  while (done < bytes.size()) {
    bool want_write = true;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      const int rc = SSL_write(ssl_, bytes.data() + done,
                               static_cast<int>(bytes.size() - done));
      if (rc > 0) {
        done += rc;
        continue;
      }
      const int error = SSL_get_error(ssl_, rc);
      if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
        return absl::UnavailableError("TLS write: " + OpensslError());
      }
      want_write = error == SSL_ERROR_WANT_WRITE;
    } else {
      const ssize_t n =
          ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n > 0) {
        done += n;
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return absl::UnavailableError(absl::StrCat("write: ", strerror(errno)));
      }
    }
    if (absl::Status waited = Wait(want_write, deadline); !waited.ok()) {
      return waited;
    }
  }
  return absl::OkStatus();
}

absl::Status RedisConnection::ReadSome(std::string* out, MonoTime deadline) {
  char buffer[16384];
  for (;;) {
    bool want_write = false;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      const int rc = SSL_read(ssl_, buffer, sizeof(buffer));
      if (rc > 0) {
        out->assign(buffer, rc);
        return absl::OkStatus();
      }
      const int error = SSL_get_error(ssl_, rc);
      if (error == SSL_ERROR_ZERO_RETURN) {
        return absl::UnavailableError("the server closed the connection");
      }
      if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
        return absl::UnavailableError("TLS read: " + OpensslError());
      }
      want_write = error == SSL_ERROR_WANT_WRITE;
    } else {
      const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n > 0) {
        out->assign(buffer, n);
        return absl::OkStatus();
      }
      if (n == 0) {
        return absl::UnavailableError("the server closed the connection");
      }
      if (errno != EAGAIN && errno != EINTR) {
        return absl::UnavailableError(absl::StrCat("read: ", strerror(errno)));
      }
    }
    if (absl::Status waited = Wait(want_write, deadline); !waited.ok()) {
      return waited;
    }
  }
}

absl::StatusOr<std::vector<RedisReply>> RedisConnection::Run(
    const std::vector<std::vector<std::string>>& commands, MonoTime deadline) {
  if (fd_ < 0) return absl::UnavailableError("redis: not connected");
  std::string wire;
  for (const std::vector<std::string>& command : commands) {
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const std::string& arg : command) {
      argv.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    char* formatted = nullptr;
    const int len = redisFormatCommandArgv(
        &formatted, static_cast<int>(argv.size()), argv.data(), lengths.data());
    if (len < 0 || formatted == nullptr) {
      return Fail(absl::InternalError("cannot format a command"));
    }
    wire.append(formatted, len);
    redisFreeCommand(formatted);
  }
  if (absl::Status written = WriteAll(wire, deadline); !written.ok()) {
    return Fail(written);
  }
  std::unique_ptr<redisReader, ReaderDeleter> reader(redisReaderCreate());
  std::vector<RedisReply> replies;
  size_t unparsed = 0;  // bytes fed since the last whole reply
  std::string chunk;
  std::string line;  // the line being read, to check its announced size
  while (replies.size() < commands.size()) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) {
      return Fail(absl::DataLossError(
          absl::StrCat("not a Redis reply: ", reader->errstr)));
    }
    if (raw != nullptr) {
      replies.push_back(Convert(*static_cast<redisReply*>(raw)));
      freeReplyObject(raw);
      unparsed = 0;
      continue;
    }
    if (unparsed > kMaxReplyBytes) {
      return Fail(absl::DataLossError(
          absl::StrCat("a reply longer than ", kMaxReplyBytes, " bytes")));
    }
    if (absl::Status read = ReadSome(&chunk, deadline); !read.ok()) {
      return Fail(read);
    }
    unparsed += chunk.size();
    // hiredis allocates an array as large as a "*N" line announces before
    // its elements come: a hostile server's "*2000000000" is refused here.
    for (char c : chunk) {
      if (c != '\n') {
        if (line.size() < 32) line.push_back(c);
        continue;
      }
      uint64_t announced = 0;
      if (!line.empty() && (line[0] == '*' || line[0] == '$') &&
          absl::SimpleAtoi(absl::StripTrailingAsciiWhitespace(
                               absl::string_view(line).substr(1)),
                           &announced) &&
          announced > kMaxReplyBytes) {
        return Fail(absl::DataLossError(
            absl::StrCat("a reply announcing ", announced,
                         line[0] == '*' ? " elements" : " bytes")));
      }
      line.clear();
    }
    redisReaderFeed(reader.get(), chunk.data(), chunk.size());
  }
  // A byte more than the replies asked for is not Redis speaking: the
  // connection is not used again.
  if (reader->pos < reader->len) Close();
  return replies;
}

}  // namespace egress
