#include "tests/fakes/scripted_upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace egress {
namespace {

constexpr int kPollMs = 20;

size_t ContentLength(absl::string_view head) {
  std::string lower = absl::AsciiStrToLower(head);
  size_t at = lower.find("\r\ncontent-length:");
  if (at == std::string::npos) return 0;
  size_t start = at + 17;
  size_t end = lower.find("\r\n", start);
  size_t length = 0;
  (void)absl::SimpleAtoi(
      absl::StripAsciiWhitespace(lower.substr(start, end - start)), &length);
  return length;
}

}  // namespace

ScriptedUpstream::ScriptedUpstream(Script script,
                                   std::chrono::milliseconds idle_close,
                                   std::string address, int port)
    : script_(script),
      idle_close_(idle_close),
      address_(std::move(address)),
      port_(port) {
  Start();
}

ScriptedUpstream::ScriptedUpstream(Responder responder, bool wait_for_body)
    : script_(Script::kCustom),
      responder_(std::move(responder)),
      wait_for_body_(wait_for_body),
      idle_close_(std::chrono::milliseconds(100)),
      address_("127.0.0.1") {
  Start();
}

ScriptedUpstream::~ScriptedUpstream() { Stop(); }

bool ScriptedUpstream::Send(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string ScriptedUpstream::last_request_head() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_request_head_;
}

std::string ScriptedUpstream::Url(absl::string_view path) const {
  return absl::StrCat("http://", address_, ":", port_, path);
}

void ScriptedUpstream::Start() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, address_.c_str(), &addr.sin_addr);
  addr.sin_port = htons(static_cast<uint16_t>(port_));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 512) != 0) {
    std::perror("ScriptedUpstream: bind/listen");
    std::abort();
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  listen_fd_ = fd;
  stopping_ = false;
  acceptor_ = std::thread([this, fd] { AcceptLoop(fd); });
}

void ScriptedUpstream::Stop() {
  if (listen_fd_ < 0) return;
  stopping_ = true;
  acceptor_.join();
  close(listen_fd_);
  listen_fd_ = -1;
  std::vector<std::thread> handlers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
    handlers.swap(handlers_);
  }
  for (std::thread& t : handlers) t.join();
}

void ScriptedUpstream::AcceptLoop(int listen_fd) {
  while (!stopping_) {
    pollfd p{listen_fd, POLLIN, 0};
    if (poll(&p, 1, kPollMs) <= 0) continue;
    int fd = accept(listen_fd, nullptr, nullptr);
    if (fd < 0) continue;
    ++connections_;
    std::lock_guard<std::mutex> lock(mu_);
    open_fds_.push_back(fd);
    handlers_.emplace_back([this, fd] { Serve(fd); });
  }
}

bool ScriptedUpstream::ReadRequest(int fd, std::string& buffer) {
  auto idle_since = std::chrono::steady_clock::now();
  while (!stopping_) {
    size_t head_end = buffer.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        last_request_head_ = buffer.substr(0, head_end + 4);
      }
      if (!wait_for_body_) {
        buffer.clear();
        return true;
      }
      size_t total =
          head_end + 4 + ContentLength(buffer.substr(0, head_end + 2));
      if (buffer.size() >= total) {
        buffer.erase(0, total);
        return true;
      }
    }
    pollfd p{fd, POLLIN, 0};
    int ready = poll(&p, 1, kPollMs);
    if (ready == 0) {
      if (script_ == Script::kCloseIdle && buffer.empty() &&
          std::chrono::steady_clock::now() - idle_since >= idle_close_) {
        return false;
      }
      continue;
    }
    char chunk[4096];
    ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  return false;
}

void ScriptedUpstream::Serve(int fd) {
  static constexpr absl::string_view kOk =
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: "
      "text/plain\r\n\r\nok";
  std::string buffer;
  int served = 0;
  bool reset = false;
  while (ReadRequest(fd, buffer)) {
    ++requests_;
    ++served;
    if (script_ == Script::kCustom) {
      if (!responder_(fd, served)) break;
      continue;
    }
    if (script_ == Script::kDropReused && served > 1) break;
    if (script_ == Script::kStall) {
      while (!stopping_)
        std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
      break;
    }
    if (script_ == Script::kGarbage) {
      Send(fd, "this is not HTTP at all\r\n\r\n");
      break;
    }
    if (script_ == Script::kResetMidBody) {
      Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
      Send(fd, std::string(100, 'x'));
      reset = true;
      break;
    }
    if (!Send(fd, kOk)) break;
  }
  if (reset) {
    // SO_LINGER with a zero timeout makes close() send RST, not FIN.
    linger l{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  std::lock_guard<std::mutex> lock(mu_);
  open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd),
                  open_fds_.end());
  close(fd);
  ++closed_;
}

}  // namespace egress
