// Logging: one line per event on stderr. As text (the default),
// "2026-11-29T15:04:05.123Z W message k=v ..."; with --log_format=json, one
// JSON object per line, {"time":...,"level":"W","message":...,"k":v,...},
// printed by protobuf's JSON printer (google.protobuf.Struct).
//
// Usage:
//   LogWarning(absl::StrCat("session to ", key, " dropped after 3 errors"));
//   LogFields fields;
//   fields.Add("caller", identity).Add("status", 200);
//   LogEvent(LogLevel::kInfo, "access", fields);
//
// Thread safety: lines from different threads never interleave: each is
// written whole, with one write(2), or appended whole to a batch. SetLogFormat
// is called once at start, before any other thread logs.
//
// egressd batches its lines while it serves (LogBatching): a busy egressd
// logs a line per call, and a write(2) per line cost about 8% of a call's CPU
// (bench/README.md). Batches go out every kLogFlushInterval; a warning or an
// error goes out at once with every line before it; the rest on exit.
#pragma once

#include <google/protobuf/struct.pb.h>

#include <chrono>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"

namespace egress {

enum class LogLevel { kInfo, kWarning, kError };
enum class LogFormat { kText, kJson };

void SetLogFormat(LogFormat format);
LogFormat GetLogFormat();

// Named values of one event, in the order added. Keys are string literals
// (kept as views); a protobuf Struct is made only for a JSON line.
class LogFields {
 public:
  LogFields& Add(absl::string_view key, absl::string_view value) {
    fields_.emplace_back(key, std::string(value));
    return *this;
  }
  LogFields& Add(absl::string_view key, const char* value) {
    return Add(key, absl::string_view(value));
  }
  LogFields& Add(absl::string_view key, double value) {
    fields_.emplace_back(key, value);
    return *this;
  }
  LogFields& Add(absl::string_view key, int value) {
    return Add(key, static_cast<double>(value));
  }
  LogFields& Add(absl::string_view key, bool value) {
    fields_.emplace_back(key, value);
    return *this;
  }

  // Appends " k=v k=v": strings as they are ("-" when empty), numbers
  // without a fraction when whole, else with three decimals.
  void AppendText(std::string& out) const;
  // The fields as JSON values.
  void AddTo(google::protobuf::Struct& out) const;

 private:
  using Value = std::variant<std::string, double, bool>;
  std::vector<std::pair<absl::string_view, Value>> fields_;
};

// While one exists, lines are written in batches: at most `interval` after
// they are logged, at once for a warning or an error (with the lines before
// it), or when 64 KiB are pending. Its destructor writes what is pending and
// returns to a write per line. At most one at a time.
class LogBatching {
 public:
  explicit LogBatching(std::chrono::milliseconds interval);
  ~LogBatching();
  LogBatching(const LogBatching&) = delete;
  LogBatching& operator=(const LogBatching&) = delete;
};

void Log(LogLevel level, absl::string_view message);
// `message` and `fields`: as text, the message followed by " k=v ..."; as
// JSON, fields beside "time", "level" and "message".
void LogEvent(LogLevel level, absl::string_view message,
              const LogFields& fields);
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
