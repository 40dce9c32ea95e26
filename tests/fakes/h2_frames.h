// Hand-written HTTP/2 frames and HPACK fields for abuse tests, and a raw
// client connection that sends them to a gRPC port: a hostile caller below
// gRPC, which no gRPC client library would let a test be.
//
//   RawH2Client client(port);
//   client.Send(std::string(kH2Preface) + H2Settings());
//   client.Send(H2Frame(kH2Headers, 0, 1, H2RequestHeaders("/x")));
//   EXPECT_TRUE(client.WaitClosed(std::chrono::seconds(5)));
//
// Only what the tests need: no HPACK Huffman coding, no dynamic table use by
// default, no flow control.
//
// Thread safety: a RawH2Client is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace egress {

inline constexpr absl::string_view kH2Preface =
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum H2FrameType : uint8_t {
  kH2Data = 0,
  kH2Headers = 1,
  kH2Priority = 2,
  kH2RstStream = 3,
  kH2Settings = 4,
  kH2Ping = 6,
  kH2GoAway = 7,
  kH2WindowUpdate = 8,
  kH2Continuation = 9,
};

inline constexpr uint8_t kH2EndStream = 0x1;
inline constexpr uint8_t kH2EndHeaders = 0x4;

// One frame: 9-byte header, then `payload`.
std::string H2Frame(uint8_t type, uint8_t flags, uint32_t stream,
                    absl::string_view payload);

// An empty SETTINGS frame (the client's first frame after the preface).
std::string H2Settings();
// A PING frame with 8 bytes of payload.
std::string H2Ping();
// RST_STREAM with CANCEL.
std::string H2RstStream(uint32_t stream);
// WINDOW_UPDATE by `increment` on `stream` (0: the connection).
std::string H2WindowUpdate(uint32_t stream, uint32_t increment);

// An HPACK integer with a `prefix_bits` prefix whose first byte carries
// `first_byte_flags` above the prefix; `zero_padding` extra 0x80 bytes make
// a valid but needlessly long encoding (RFC 7541 5.1 does not forbid them).
std::string HpackInteger(uint64_t value, int prefix_bits,
                         uint8_t first_byte_flags, int zero_padding = 0);
// A literal field without indexing, new name, no Huffman coding.
std::string HpackLiteral(absl::string_view name, absl::string_view value);
// An indexed field (static table 1..61).
std::string HpackIndexed(uint32_t index);

// The header block of a gRPC call on `path` (plaintext, no dynamic table).
std::string H2RequestHeaders(absl::string_view path);

// A plaintext TCP connection to 127.0.0.1:`port` (from `source_ip` when not
// empty, another loopback address such as "127.0.0.2").
class RawH2Client {
 public:
  explicit RawH2Client(int port, const std::string& source_ip = "");
  ~RawH2Client();
  RawH2Client(const RawH2Client&) = delete;
  RawH2Client& operator=(const RawH2Client&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  // Writes all of `bytes`; false once the peer closed or reset the
  // connection, or nothing could be written for 5 s.
  bool Send(absl::string_view bytes);
  // Reads and discards what arrives until the peer closes; false if it is
  // still open after `limit`.
  bool WaitClosed(std::chrono::milliseconds limit);
  // Reads and discards what is there now, without waiting; false once the
  // peer closed the connection.
  bool DrainAvailable();
  // Bytes read by WaitClosed and DrainAvailable so far.
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  int fd_ = -1;
  uint64_t bytes_read_ = 0;
};

}  // namespace egress
