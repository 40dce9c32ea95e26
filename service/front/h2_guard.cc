#include "service/front/h2_guard.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace egress {
namespace {

constexpr absl::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum FrameType : uint8_t {
  kData = 0,
  kHeaders = 1,
  kPriority = 2,
  kRstStream = 3,
  kSettings = 4,
  kPushPromise = 5,
  kPing = 6,
  kGoAway = 7,
  kWindowUpdate = 8,
  kContinuation = 9,
};
constexpr uint8_t kEndStream = 0x1;
constexpr uint8_t kAck = 0x1;
constexpr uint8_t kEndHeaders = 0x4;
constexpr uint8_t kPadded = 0x8;
constexpr uint8_t kPriorityFlag = 0x20;

// A frame's 9-byte header (RFC 9113 4.1).
struct FrameHeader {
  uint32_t length;
  uint8_t type;
  uint8_t flags;
  uint32_t stream;
};

FrameHeader ParseFrameHeader(const uint8_t (&h)[9]) {
  return FrameHeader{(uint32_t{h[0]} << 16) | (uint32_t{h[1]} << 8) | h[2],
                     h[3], h[4],
                     ((uint32_t{h[5]} << 24) | (uint32_t{h[6]} << 16) |
                      (uint32_t{h[7]} << 8) | h[8]) &
                         0x7fffffffu};
}

}  // namespace

const char* ConnectionRefusalName(ConnectionRefusal refusal) {
  switch (refusal) {
    case ConnectionRefusal::kNone:
      return "none";
    case ConnectionRefusal::kMaxConnections:
      return "max_connections";
    case ConnectionRefusal::kMaxConnectionsPerPeer:
      return "max_connections_per_peer";
    case ConnectionRefusal::kDescriptors:
      return "descriptors";
    case ConnectionRefusal::kHandshakeTimeout:
      return "handshake_timeout";
    case ConnectionRefusal::kTlsHandshake:
      return "tls_handshake";
    case ConnectionRefusal::kNotHttp2:
      return "not_http2";
    case ConnectionRefusal::kHeaderBlock:
      return "header_block";
    case ConnectionRefusal::kMalformed:
      return "malformed";
    case ConnectionRefusal::kResetFlood:
      return "reset_flood";
    case ConnectionRefusal::kControlFlood:
      return "control_flood";
    case ConnectionRefusal::kStreams:
      return "max_concurrent_streams";
    case ConnectionRefusal::kBackend:
      return "backend";
  }
  return "none";
}

bool H2Guard::Bucket::Take(double rate, MonoTime now) {
  const double burst = rate * 10;
  if (last == MonoTime{}) {
    tokens = burst;
  } else {
    tokens = std::min(burst, tokens + rate * Seconds(now - last));
  }
  last = now;
  if (tokens < 1) return false;
  tokens -= 1;
  return true;
}

H2Guard::H2Guard(const H2GuardLimits& limits)
    : limits_(limits), table_capacity_(limits.header_table_size) {}

bool H2Guard::Refuse(ConnectionRefusal refusal, std::string detail) {
  refusal_ = refusal;
  detail_ = std::move(detail);
  return false;
}

bool H2Guard::Inspect(absl::string_view bytes, MonoTime now) {
  if (refusal_ != ConnectionRefusal::kNone) return false;
  while (!bytes.empty()) {
    if (preface_seen_ < kPrefaceLength) {
      const size_t n = std::min(bytes.size(), kPrefaceLength - preface_seen_);
      if (bytes.substr(0, n) != kPreface.substr(preface_seen_, n)) {
        return Refuse(ConnectionRefusal::kNotHttp2,
                      "the connection did not start with the HTTP/2 client "
                      "preface (gRPC needs HTTP/2; is the caller using TLS "
                      "against a plaintext port, or HTTP/1.1?)");
      }
      preface_seen_ += n;
      bytes.remove_prefix(n);
      continue;
    }
    if (header_seen_ < sizeof(header_)) {
      const size_t n = std::min(bytes.size(), sizeof(header_) - header_seen_);
      std::copy_n(bytes.data(), n, header_ + header_seen_);
      header_seen_ += n;
      bytes.remove_prefix(n);
      if (header_seen_ == sizeof(header_) && !FrameHeaderDone(now)) {
        return false;
      }
      if (header_seen_ == sizeof(header_) && length_ == 0 && !FrameDone(now)) {
        return false;
      }
      continue;
    }
    const size_t n = std::min<size_t>(bytes.size(), length_ - payload_seen_);
    if (!PayloadBytes(bytes.substr(0, n))) return false;
    payload_seen_ += static_cast<uint32_t>(n);
    bytes.remove_prefix(n);
    if (payload_seen_ == length_ && !FrameDone(now)) return false;
  }
  return true;
}

void H2Guard::ServerBytes(absl::string_view bytes) {
  while (!bytes.empty()) {
    if (server_skip_ > 0) {
      const size_t n = std::min<size_t>(bytes.size(), server_skip_);
      server_skip_ -= static_cast<uint32_t>(n);
      bytes.remove_prefix(n);
      continue;
    }
    const size_t n =
        std::min(bytes.size(), sizeof(server_header_) - server_header_seen_);
    std::copy_n(bytes.data(), n, server_header_ + server_header_seen_);
    server_header_seen_ += n;
    bytes.remove_prefix(n);
    if (server_header_seen_ < sizeof(server_header_)) return;
    server_header_seen_ = 0;
    const FrameHeader frame = ParseFrameHeader(server_header_);
    server_skip_ = frame.length;
    const uint8_t type = frame.type;
    const uint8_t flags = frame.flags;
    const uint32_t stream = frame.stream;
    if ((flags & kAck) != 0 && type == kPing && pings_unanswered_ > 0) {
      --pings_unanswered_;
    }
    if ((flags & kAck) != 0 && type == kSettings && settings_unanswered_ > 0) {
      --settings_unanswered_;
    }
    if (type == kData || type == kHeaders) server_answered_since_ping_ = true;
    if (type == kRstStream ||
        ((type == kData || type == kHeaders) && (flags & kEndStream) != 0)) {
      open_streams_.erase(stream);
    }
  }
}

bool H2Guard::FrameHeaderDone(MonoTime now) {
  const FrameHeader frame = ParseFrameHeader(header_);
  length_ = frame.length;
  type_ = frame.type;
  flags_ = frame.flags;
  stream_ = frame.stream;
  payload_seen_ = 0;
  small_.clear();
  if (in_block_ && (type_ != kContinuation || stream_ != block_stream_)) {
    return Refuse(ConnectionRefusal::kMalformed,
                  "a header block was interrupted by another frame");
  }
  switch (type_) {
    case kHeaders:
      if (stream_ > last_client_stream_ && (stream_ & 1) == 1) {
        last_client_stream_ = stream_;
        open_streams_.insert(stream_);
        if (open_streams_.size() > limits_.max_concurrent_streams) {
          return Refuse(
              ConnectionRefusal::kStreams,
              absl::StrCat("more than ", limits_.max_concurrent_streams,
                           " streams open at once (the server's "
                           "SETTINGS_MAX_CONCURRENT_STREAMS, "
                           "--max_concurrent_streams)"));
        }
      }
      in_block_ = true;
      block_stream_ = stream_;
      block_.clear();
      fragment_known_ = false;
      break;
    case kContinuation:
      if (!in_block_) {
        return Refuse(ConnectionRefusal::kMalformed,
                      "CONTINUATION without a header block open");
      }
      fragment_begin_ = 0;
      fragment_end_ = length_;
      fragment_known_ = true;
      break;
    case kPushPromise:
      return Refuse(ConnectionRefusal::kMalformed,
                    "a client sent PUSH_PROMISE");
    case kRstStream:
      open_streams_.erase(stream_);
      if (!resets_.Take(limits_.resets_per_second, now)) {
        return Refuse(ConnectionRefusal::kResetFlood,
                      absl::StrCat("streams reset faster than ",
                                   limits_.resets_per_second,
                                   " per second (--max_resets_per_second)"));
      }
      break;
    case kData:
    case kWindowUpdate:
    case kGoAway:
      break;  // judged on their payload or not at all
    case kSettings:
    case kPing:
      if ((flags_ & kAck) != 0) break;
      if (++(type_ == kPing ? pings_unanswered_ : settings_unanswered_) >
          defaults::kMaxUnansweredControlFrames) {
        return Refuse(
            ConnectionRefusal::kControlFlood,
            absl::StrCat("more than ", defaults::kMaxUnansweredControlFrames,
                         " ", type_ == kPing ? "PING" : "SETTINGS",
                         " frames unacknowledged: the client sends "
                         "them without reading the answers"));
      }
      // A PING after the server sent DATA or HEADERS is free, as gRPC's own
      // ping strikes count it: clients measure bandwidth (BDP) with one
      // PING per burst of data they receive, thousands a second under load.
      if (type_ == kPing && server_answered_since_ping_) {
        server_answered_since_ping_ = false;
        break;
      }
      [[fallthrough]];
    default:  // PRIORITY and unknown types
      if (!control_.Take(limits_.control_frames_per_second, now)) {
        return Refuse(
            ConnectionRefusal::kControlFlood,
            absl::StrCat("PING, SETTINGS, PRIORITY and empty frames faster "
                         "than ",
                         limits_.control_frames_per_second,
                         " per second (--max_control_frames_per_second)"));
      }
      break;
  }
  return true;
}

bool H2Guard::PayloadBytes(absl::string_view bytes) {
  if (type_ == kWindowUpdate) {
    const absl::string_view head =
        bytes.substr(0, 4 - std::min<size_t>(small_.size(), 4));
    small_.append(head.data(), head.size());
    return true;
  }
  if (type_ != kHeaders && type_ != kContinuation) return true;
  // HEADERS: the pad length and priority come first, then the fragment,
  // then the padding.
  size_t offset = payload_seen_;
  if (!fragment_known_) {
    const size_t prefix =
        ((flags_ & kPadded) ? 1 : 0) + ((flags_ & kPriorityFlag) ? 5 : 0);
    while (small_.size() < prefix && !bytes.empty()) {
      small_.push_back(bytes[0]);
      bytes.remove_prefix(1);
      ++offset;
    }
    if (small_.size() < prefix) return true;
    const uint32_t pad =
        (flags_ & kPadded) ? static_cast<uint8_t>(small_[0]) : 0;
    if (prefix + pad > length_) {
      return Refuse(ConnectionRefusal::kMalformed,
                    "HEADERS padding exceeds the frame");
    }
    fragment_begin_ = static_cast<uint32_t>(prefix);
    fragment_end_ = length_ - pad;
    fragment_known_ = true;
  }
  // The part of `bytes` (at `offset` in the payload) inside the fragment.
  const size_t begin = std::max<size_t>(offset, fragment_begin_);
  const size_t end = std::min<size_t>(offset + bytes.size(), fragment_end_);
  if (begin < end) {
    if (block_.size() + (end - begin) > limits_.max_header_block_bytes) {
      return Refuse(
          ConnectionRefusal::kHeaderBlock,
          absl::StrCat("a header block over ", limits_.max_header_block_bytes,
                       " bytes (CONTINUATION flood?)"));
    }
    block_.append(bytes.data() + (begin - offset), end - begin);
  }
  return true;
}

bool H2Guard::FrameDone(MonoTime now) {
  header_seen_ = 0;
  switch (type_) {
    case kWindowUpdate:
      if (small_.size() == 4 && (static_cast<uint8_t>(small_[0]) & 0x7f) == 0 &&
          small_[1] == 0 && small_[2] == 0 && small_[3] == 0 &&
          !control_.Take(limits_.control_frames_per_second, now)) {
        return Refuse(ConnectionRefusal::kControlFlood,
                      "WINDOW_UPDATE frames of 0 faster than allowed "
                      "(--max_control_frames_per_second)");
      }
      return true;
    case kData:
      if (length_ == 0 && (flags_ & kEndStream) == 0 &&
          !control_.Take(limits_.control_frames_per_second, now)) {
        return Refuse(ConnectionRefusal::kControlFlood,
                      "empty DATA frames faster than allowed "
                      "(--max_control_frames_per_second)");
      }
      return true;
    case kHeaders:
    case kContinuation:
      if ((flags_ & kEndHeaders) == 0) return true;
      in_block_ = false;
      return CheckHeaderBlock();
    default:
      return true;
  }
}

}  // namespace egress
