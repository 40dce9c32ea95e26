#include "tests/fakes/h2_frames.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace egress {

std::string H2Frame(uint8_t type, uint8_t flags, uint32_t stream,
                    absl::string_view payload) {
  const uint32_t length = static_cast<uint32_t>(payload.size());
  std::string frame;
  frame.reserve(9 + payload.size());
  frame.push_back(static_cast<char>((length >> 16) & 0xff));
  frame.push_back(static_cast<char>((length >> 8) & 0xff));
  frame.push_back(static_cast<char>(length & 0xff));
  frame.push_back(static_cast<char>(type));
  frame.push_back(static_cast<char>(flags));
  for (int shift = 24; shift >= 0; shift -= 8) {
    frame.push_back(static_cast<char>((stream >> shift) & 0xff));
  }
  frame.append(payload.data(), payload.size());
  return frame;
}

namespace {

std::string Be32(uint32_t v) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(v >> (24 - 8 * i));
  return out;
}

}  // namespace

std::string H2Settings() { return H2Frame(kH2Settings, 0, 0, ""); }

std::string H2Ping() { return H2Frame(kH2Ping, 0, 0, std::string(8, 'p')); }

std::string H2RstStream(uint32_t stream) {
  return H2Frame(kH2RstStream, 0, stream, Be32(8 /* CANCEL */));
}

std::string H2WindowUpdate(uint32_t stream, uint32_t increment) {
  return H2Frame(kH2WindowUpdate, 0, stream, Be32(increment));
}

std::string HpackInteger(uint64_t value, int prefix_bits,
                         uint8_t first_byte_flags, int zero_padding) {
  const uint64_t max_prefix = (uint64_t{1} << prefix_bits) - 1;
  std::string out;
  if (value < max_prefix && zero_padding == 0) {
    out.push_back(static_cast<char>(first_byte_flags | value));
    return out;
  }
  const uint64_t first = value < max_prefix ? value : max_prefix;
  out.push_back(static_cast<char>(first_byte_flags | first));
  if (value < max_prefix) {
    // A short value cannot take continuation bytes; pad a large one instead.
    return out;
  }
  value -= max_prefix;
  while (value >= 128) {
    out.push_back(static_cast<char>(0x80 | (value & 0x7f)));
    value >>= 7;
  }
  if (zero_padding > 0) {
    out.push_back(static_cast<char>(0x80 | value));
    for (int i = 1; i < zero_padding; ++i)
      out.push_back(static_cast<char>(0x80));
    out.push_back(0);
  } else {
    out.push_back(static_cast<char>(value));
  }
  return out;
}

std::string HpackLiteral(absl::string_view name, absl::string_view value) {
  std::string out(1, '\0');  // literal without indexing, new name
  out += HpackInteger(name.size(), 7, 0);
  out.append(name.data(), name.size());
  out += HpackInteger(value.size(), 7, 0);
  out.append(value.data(), value.size());
  return out;
}

std::string HpackIndexed(uint32_t index) {
  return HpackInteger(index, 7, 0x80);
}

std::string H2RequestHeaders(absl::string_view path) {
  // Static table: 3 = :method POST, 6 = :scheme http.
  std::string block = HpackIndexed(3) + HpackIndexed(6);
  block += HpackLiteral(":path", path);
  block += HpackLiteral(":authority", "localhost");
  block += HpackLiteral("content-type", "application/grpc");
  block += HpackLiteral("te", "trailers");
  return block;
}

RawH2Client::RawH2Client(int port, const std::string& source_ip) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  if (!source_ip.empty()) {
    sockaddr_in source{};
    source.sin_family = AF_INET;
    inet_pton(AF_INET, source_ip.c_str(), &source.sin_addr);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&source), sizeof(source)) != 0) {
      close(fd_);
      fd_ = -1;
      return;
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd_);
    fd_ = -1;
    return;
  }
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

RawH2Client::~RawH2Client() {
  if (fd_ >= 0) close(fd_);
}

bool RawH2Client::Send(absl::string_view bytes) {
  if (fd_ < 0) return false;
  while (!bytes.empty()) {
    pollfd p{fd_, POLLOUT, 0};
    if (poll(&p, 1, 5000) <= 0) return false;
    if ((p.revents & (POLLERR | POLLHUP)) != 0) return false;
    const ssize_t n =
        send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool RawH2Client::DrainAvailable() {
  if (fd_ < 0) return false;
  char buf[65536];
  while (true) {
    const ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      bytes_read_ += static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    return false;  // EOF or reset
  }
}

bool RawH2Client::WaitClosed(std::chrono::milliseconds limit) {
  if (fd_ < 0) return true;
  const auto end = std::chrono::steady_clock::now() + limit;
  while (true) {
    if (!DrainAvailable()) return true;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    poll(&p, 1, static_cast<int>(left.count()));
  }
}

}  // namespace egress
