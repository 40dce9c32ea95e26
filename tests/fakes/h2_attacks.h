// The HTTP/2 attacks of the abuse suite (tests/abuse) and of the measurement
// tool bench/h2_abuse, each against a gRPC port on 127.0.0.1, bounded in bytes
// or frames and in time, stopping early when the server closes the connection.
//
//   AttackResult r = ContinuationFlood(port, 512 << 20,
//   std::chrono::seconds(60));
//   // r.closed: the server closed the connection; r.sent: bytes it took first
//
// Thread safety: each call uses its own connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace egress {

struct AttackResult {
  bool connected = false;
  bool closed = false;  // the server closed or reset the connection
  uint64_t sent = 0;    // bytes (floods) or frames/pairs (counted attacks)
  double seconds = 0;   // how long the attack ran
};

// One HEADERS without END_HEADERS, then CONTINUATION frames of small literal
// fields, up to `bytes` (CVE-2023-33953).
AttackResult ContinuationFlood(int port, uint64_t bytes,
                               std::chrono::seconds limit);
// HEADERS of a call then RST_STREAM, `pairs` times on new streams
// (CVE-2023-44487).
AttackResult RapidReset(int port, uint64_t pairs, std::chrono::seconds limit);
// `frames` SETTINGS frames, never reading the acknowledgements.
AttackResult SettingsFlood(int port, uint64_t frames,
                           std::chrono::seconds limit);
// `frames` PING frames, never reading the acknowledgements.
AttackResult PingFlood(int port, uint64_t frames, std::chrono::seconds limit);
// Header blocks of `fields` tiny literal fields each, on new streams, until
// `bytes` are sent.
AttackResult TinyFields(int port, uint64_t fields, uint64_t bytes,
                        std::chrono::seconds limit);

// The attacks by name, for bench/h2_abuse: "continuation", "rapid-reset",
// "settings", "ping", "tiny-fields"; `amount` is bytes or frames as above.
AttackResult RunAttack(const std::string& name, int port, uint64_t amount,
                       std::chrono::seconds limit);

}  // namespace egress
