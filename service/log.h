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
// Thread safety: each line is written with one write(2), so lines from
// different threads never interleave. SetLogFormat is called once at start,
// before any other thread logs.
#pragma once

#include <google/protobuf/struct.pb.h>

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
