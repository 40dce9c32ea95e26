#include "service/transport/upstream_stream.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

namespace egress {
namespace {

using std::chrono::nanoseconds;

// Reads of this size go straight to the socket: httplib's SocketStream keeps
// its own buffer only for reads smaller than 4 KiB, and bytes held there would
// be invisible to poll().
constexpr size_t kBlock = 16 << 10;

int CeilMillis(nanoseconds d) {
  const int64_t ms = (d.count() + 999999) / 1000000;
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

}  // namespace

UpstreamStream::UpstreamStream(httplib::Stream& inner, int fd, SSL* ssl,
                               UpstreamExchange& exchange, std::string& buffer)
    : inner_(inner), fd_(fd), ssl_(ssl), exchange_(exchange), buffer_(buffer) {
  if (buffer_.size() != kBlock) buffer_.resize(kBlock);
  exchange_.connected = true;
}

nanoseconds UpstreamStream::TimeLeft() {
  const nanoseconds remaining = exchange_.deadline.Remaining();
  if (remaining <= nanoseconds::zero()) {
    exchange_.failure = UpstreamExchange::Failure::kDeadline;
  }
  return remaining;
}

bool UpstreamStream::Wait(bool for_write) {
  if (!for_write && ssl_ != nullptr && SSL_pending(ssl_) > 0) return true;
  const nanoseconds remaining = TimeLeft();
  if (remaining <= nanoseconds::zero()) return false;
  const bool idle_bound = !for_write && exchange_.idle_timeout < remaining;
  const int timeout_ms =
      CeilMillis(idle_bound ? exchange_.idle_timeout : remaining);
  pollfd p{fd_, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
  int ready;
  do {
    ready = poll(&p, 1, timeout_ms);
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) {
    exchange_.failure = idle_bound ? UpstreamExchange::Failure::kIdle
                                   : UpstreamExchange::Failure::kDeadline;
    return false;
  }
  // Ready, hung up or failed: the read or write that follows tells which.
  return true;
}

ssize_t UpstreamStream::Fill() {
  ssize_t n;
  if (ssl_ != nullptr) {
    // TLS: after the wait, SSL_read directly. httplib's SSLSocketStream would
    // poll the socket once more first. A record without application data (a
    // TLS 1.3 ticket) leaves nothing to read yet: wait again.
    while (true) {
      if (!Wait(/*for_write=*/false)) return -1;
      ERR_clear_error();
      n = SSL_read(ssl_, buffer_.data(), static_cast<int>(buffer_.size()));
      if (n > 0 ||
          SSL_get_error(ssl_, static_cast<int>(n)) != SSL_ERROR_WANT_READ) {
        break;
      }
    }
  } else {
    // Plain TCP: after the wait, the socket is read directly. httplib's
    // SocketStream would poll it once more first.
    do {
      if (!Wait(/*for_write=*/false)) return -1;
      n = recv(fd_, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
    } while (n < 0 &&
             (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
  }
  buffer_end_ = n > 0 ? static_cast<size_t>(n) : 0;
  buffer_offset_ = 0;
  return n;
}

bool UpstreamStream::ReadHead() {
  ResponseHeadReader reader(exchange_.limits, exchange_.head_request);
  while (!reader.done()) {
    if (Fill() <= 0) return false;  // closed, reset or timed out first
    absl::Status appended =
        reader.Append(absl::string_view(buffer_.data(), buffer_end_));
    if (!appended.ok()) {
      exchange_.failure = UpstreamExchange::Failure::kHead;
      exchange_.head_error = std::move(appended);
      return false;
    }
  }
  // The body's first bytes came in the head's last block: keep them.
  const absl::string_view rest = reader.rest();
  std::memcpy(buffer_.data(), rest.data(), rest.size());
  buffer_end_ = rest.size();
  buffer_offset_ = 0;
  canonical_ = reader.CanonicalHead();
  canonical_offset_ = 0;
  if (exchange_.on_head && !exchange_.on_head(reader.head())) {
    exchange_.failure = UpstreamExchange::Failure::kRejected;
    return false;
  }
  head_done_ = true;
  return true;
}

size_t UpstreamStream::Serve(const char* from, size_t end, size_t& offset,
                             char* ptr, size_t size) {
  const size_t n = std::min(size, end - offset);
  std::memcpy(ptr, from + offset, n);
  offset += n;
  return n;
}

ssize_t UpstreamStream::read(char* ptr, size_t size) {
  if (!head_done_ && !ReadHead()) return -1;
  if (canonical_offset_ < canonical_.size()) {
    return static_cast<ssize_t>(Serve(canonical_.data(), canonical_.size(),
                                      canonical_offset_, ptr, size));
  }
  if (buffer_offset_ >= buffer_end_) {
    const ssize_t n = Fill();
    if (n <= 0) return n;
  }
  return static_cast<ssize_t>(
      Serve(buffer_.data(), buffer_end_, buffer_offset_, ptr, size));
}

ssize_t UpstreamStream::write(const char* ptr, size_t size) {
  if (ssl_ != nullptr) {
    // TLS: one wait (no longer than the time left), then SSL_write directly.
    // httplib's SSLSocketStream would poll the socket twice more, and peek at
    // it, before every write.
    if (!Wait(/*for_write=*/true)) return -1;
    const int chunk = static_cast<int>(std::min<size_t>(size, INT_MAX));
    while (true) {
      ERR_clear_error();
      const int n = SSL_write(ssl_, ptr, chunk);
      if (n > 0) return n;
      if (SSL_get_error(ssl_, n) != SSL_ERROR_WANT_WRITE) return -1;
      if (!Wait(/*for_write=*/true)) return -1;
    }
  }
  // Plain TCP: send at once, and wait (no longer than the time left) only
  // while the socket's buffer is full. httplib's SocketStream would poll the
  // socket twice before every send.
  if (TimeLeft() <= nanoseconds::zero()) return -1;
  while (true) {
    const ssize_t n = send(fd_, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    if (!Wait(/*for_write=*/true)) return -1;
  }
}

bool UpstreamStream::is_readable() const {
  if (canonical_offset_ < canonical_.size() || buffer_offset_ < buffer_end_) {
    return true;
  }
  return inner_.is_readable();
}

bool UpstreamStream::is_writable() const { return inner_.is_writable(); }

void UpstreamStream::get_remote_ip_and_port(std::string& ip, int& port) const {
  inner_.get_remote_ip_and_port(ip, port);
}

void UpstreamStream::get_local_ip_and_port(std::string& ip, int& port) const {
  inner_.get_local_ip_and_port(ip, port);
}

socket_t UpstreamStream::socket() const { return inner_.socket(); }

bool UpstreamStream::HasUnreadBytes() const {
  if (canonical_offset_ < canonical_.size() || buffer_offset_ < buffer_end_) {
    return true;
  }
  if (ssl_ != nullptr && SSL_pending(ssl_) > 0) return true;
  pollfd p{fd_, POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

}  // namespace egress
