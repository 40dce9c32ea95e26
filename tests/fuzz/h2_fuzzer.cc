// libFuzzer target: H2Guard on arbitrary bytes from a caller (after the
// HTTP/2 preface) and, for its stream and PING accounting, the same bytes as
// if the server had sent them. Built and run by scripts/fuzz.sh (clang); its
// seeds (tests/fuzz/h2_corpus) replay in every `bazel test`.
// Whatever the input, nothing may crash, leak or trip a sanitizer, and the
// verdict must not depend on where reads end: the input fed whole and fed in
// pieces of the size its first byte chooses (the server's bytes, then the
// caller's) get the same refusal.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "service/front/h2_guard.h"

namespace {

constexpr absl::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

egress::ConnectionRefusal Run(absl::string_view input, size_t piece) {
  egress::H2GuardLimits limits;
  limits.max_header_block_bytes = 4096;  // small, so every bound is reachable
  limits.max_concurrent_streams = 8;
  limits.resets_per_second = 2;
  limits.control_frames_per_second = 3;
  egress::H2Guard guard(limits);
  const egress::MonoTime now{std::chrono::hours(1)};
  guard.Inspect(kPreface, now);
  // The server's bytes first, in the same pieces: what the guard concludes
  // depends on the order of the two directions (a PING after the server's
  // DATA is free), not on where either one's reads end.
  for (size_t at = 0; at < input.size(); at += piece) {
    guard.ServerBytes(input.substr(at, piece));
  }
  for (size_t at = 0; at < input.size(); at += piece) {
    if (!guard.Inspect(input.substr(at, piece), now)) break;
  }
  return guard.refusal();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = 1 + data[0] % 17;
  const absl::string_view input(reinterpret_cast<const char*>(data) + 1,
                                size - 1);
  if (Run(input, input.size() + 1) != Run(input, piece)) std::abort();
  return 0;
}
