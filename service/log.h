// Logging: one line per event on stderr, "2026-11-29T15:04:05.123Z W message".
//
// Usage:
//   LogWarning(absl::StrCat("session to ", key, " dropped after 3 errors"));
//
// Thread safety: each line is written with one write(2), so lines from
// different threads never interleave.
#pragma once

#include "absl/strings/string_view.h"

namespace egress {

enum class LogLevel { kInfo, kWarning, kError };

void Log(LogLevel level, absl::string_view message);
inline void LogInfo(absl::string_view message) {
  Log(LogLevel::kInfo, message);
}
inline void LogWarning(absl::string_view message) {
  Log(LogLevel::kWarning, message);
}
inline void LogError(absl::string_view message) {
  Log(LogLevel::kError, message);
}

}  // namespace egress
