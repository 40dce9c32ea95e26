// H2Guard: reads what a caller sends on one HTTP/2 connection before gRPC
// does, and says when the connection must be closed instead: gRPC 1.51 has no
// bound on a header block (CVE-2023-33953) nor on streams a client opens and
// resets at once (CVE-2023-44487), and answers every PING and SETTINGS even to
// a client that never reads. The guard checks frame headers and header blocks
// only; it never changes a byte, so what gRPC sees is exactly what was sent.
//
//   H2Guard guard(limits);
//   if (!guard.Inspect(bytes, now)) { close; count guard.refusal(); }
//
// What it bounds, per connection:
//   - the client preface (a connection that is not HTTP/2 is closed);
//   - a header block (HEADERS and its CONTINUATIONs): at most
//     `max_header_block_bytes` on the wire and, decoded, at most as many by
//     an upper bound computed without Huffman decoding (a literal's value at
//     8/5 its coded length, an indexed field at the size of its table entry
//     as far as the guard's mirror of the dynamic table knows it, or at the
//     whole table). Malformed HPACK (an integer longer than 4 continuation
//     bytes, an index 0, a table size beyond the server's) closes too;
//   - RST_STREAM frames: a token bucket, `resets_per_second` with a burst of
//     ten seconds' worth;
//   - streams open at once, counted on the wire (opened by the client's
//     HEADERS, closed by END_STREAM from the server or RST_STREAM either
//     way): gRPC 1.51 lets a client open more than it advertised while the
//     answers of the others wait for flow control window that a client that
//     never reads never gives, each holding a call's memory;
//   - frames that make the server work without carrying a call (PING,
//     SETTINGS, PRIORITY, WINDOW_UPDATE of 0, empty DATA before the end of a
//     stream, unknown types): another bucket, `control_frames_per_second`.
//     A PING after the server sent DATA or HEADERS is not charged (gRPC's
//     own ping-strike rule): gRPC clients send one per burst of data they
//     receive to measure bandwidth, as many as their calls.
//
// Thread safety: one connection, one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "service/base/clock.h"
#include "service/base/defaults.h"

namespace egress {

struct H2GuardLimits {
  // A header block (HEADERS and its CONTINUATIONs) larger than this closes
  // the connection: --max_header_list_bytes times 4.
  size_t max_header_block_bytes = 4 * defaults::kMaxHeaderListBytes;
  double resets_per_second = defaults::kMaxResetsPerSecond;
  double control_frames_per_second = defaults::kMaxControlFramesPerSecond;
  // The server's SETTINGS_HEADER_TABLE_SIZE: gRPC's decoder table (HTTP/2's
  // default, RFC 9113 6.5.2).
  uint32_t header_table_size = defaults::kHttp2HeaderTableSize;
  // The server's SETTINGS_MAX_CONCURRENT_STREAMS: a client that opens more
  // streams than that, counted on the wire, breaks the protocol.
  uint32_t max_concurrent_streams = defaults::kMaxConcurrentStreams;
};

// Why a caller's connection was refused or closed by the front (GrpcFront)
// or its guard: the `reason` label of egress_grpc_connections_refused_total.
enum class ConnectionRefusal {
  kNone,
  kMaxConnections,         // --max_connections reached
  kMaxConnectionsPerPeer,  // --max_connections_per_peer reached
  kDescriptors,            // the process is out of file descriptors
  kHandshakeTimeout,       // no TLS handshake or preface in --handshake_timeout
  kTlsHandshake,           // the TLS handshake failed
  kNotHttp2,      // the first 24 bytes are not the HTTP/2 client preface
  kHeaderBlock,   // a header block over max_header_block_bytes
  kMalformed,     // malformed HPACK, or frames that cannot be HTTP/2
  kResetFlood,    // RST_STREAM faster than resets_per_second
  kControlFlood,  // PING, SETTINGS and the like faster than allowed
  kStreams,       // more streams open than SETTINGS_MAX_CONCURRENT_STREAMS
  kBackend,       // gRPC's own listener could not be reached
};
inline constexpr size_t kConnectionRefusalCount = 13;
const char* ConnectionRefusalName(ConnectionRefusal refusal);

class H2Guard {
 public:
  explicit H2Guard(const H2GuardLimits& limits);

  // Inspects the next bytes from the client, which may end anywhere in a
  // frame. False when the connection must be closed; refusal() and detail()
  // say why. Once false, stays false.
  bool Inspect(absl::string_view bytes, MonoTime now);

  // Follows what the server sends (frame headers only), to see streams end.
  void ServerBytes(absl::string_view bytes);

  bool preface_done() const { return preface_seen_ == kPrefaceLength; }
  ConnectionRefusal refusal() const { return refusal_; }
  const std::string& detail() const { return detail_; }

 private:
  static constexpr size_t kPrefaceLength = 24;

  // A token bucket: `rate` per second, up to ten seconds' worth.
  struct Bucket {
    double tokens = 0;
    MonoTime last{};
    bool Take(double rate, MonoTime now);
  };

  bool Refuse(ConnectionRefusal refusal, std::string detail);
  bool FrameHeaderDone(MonoTime now);
  bool PayloadBytes(absl::string_view bytes);
  bool FrameDone(MonoTime now);
  // Parses a whole header block; false (after Refuse) when it must close.
  bool CheckHeaderBlock();

  const H2GuardLimits limits_;
  ConnectionRefusal refusal_ = ConnectionRefusal::kNone;
  std::string detail_;
  size_t preface_seen_ = 0;

  // The frame being read.
  uint8_t header_[9] = {};
  size_t header_seen_ = 0;
  uint32_t length_ = 0;
  uint8_t type_ = 0;
  uint8_t flags_ = 0;
  uint32_t stream_ = 0;
  uint32_t payload_seen_ = 0;
  // HEADERS: padding and priority bytes around the fragment.
  std::string small_;  // the first bytes of a HEADERS or WINDOW_UPDATE payload

  // The header block being assembled (one at a time per connection).
  bool in_block_ = false;
  uint32_t block_stream_ = 0;
  std::string block_;
  // HEADERS payload layout, once known.
  bool fragment_known_ = false;  // HEADERS: once its prefix is read
  uint32_t fragment_begin_ = 0;
  uint32_t fragment_end_ = 0;

  // Upper bounds of the dynamic table's entries, newest first, and their sum.
  std::deque<size_t> table_;
  size_t table_bytes_ = 0;
  size_t table_capacity_;

  Bucket resets_;
  Bucket control_;

  // Streams open on the wire, and the newest the client opened.
  absl::flat_hash_set<uint32_t> open_streams_;
  uint32_t last_client_stream_ = 0;
  // PINGs and SETTINGS from the client the server has not acknowledged.
  int pings_unanswered_ = 0;
  int settings_unanswered_ = 0;
  // The server sent DATA or HEADERS since the client's last PING: the next
  // PING is not charged to `control_`.
  bool server_answered_since_ping_ = false;
  // The server's frame being read (its header only).
  uint8_t server_header_[9] = {};
  size_t server_header_seen_ = 0;
  uint32_t server_skip_ = 0;  // payload bytes left to skip
};

}  // namespace egress
