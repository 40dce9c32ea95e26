#include "service/log.h"

#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace egress {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};

const char* Tag(LogLevel level) {
  return level == LogLevel::kInfo      ? "I"
         : level == LogLevel::kWarning ? "W"
                                       : "E";
}

std::string Now() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                          absl::UTCTimeZone());
}

// One write per line keeps concurrent lines whole; a short write to stderr is
// not worth retrying for a log line.
void WriteLine(std::string line) {
  line.push_back('\n');
  (void)!write(STDERR_FILENO, line.data(), line.size());
}

void WriteJson(LogLevel level, absl::string_view message,
               const LogFields* fields) {
  google::protobuf::Struct line;
  auto& out = *line.mutable_fields();
  out["time"].set_string_value(Now());
  out["level"].set_string_value(Tag(level));
  out["message"].set_string_value(std::string(message));
  if (fields != nullptr) fields->AddTo(line);
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(line, &text, options).ok()) {
    text = R"({"level":"E","message":"log line not printable as JSON"})";
  }
  WriteLine(std::move(text));
}

}  // namespace

void SetLogFormat(LogFormat format) { g_format.store(format); }
LogFormat GetLogFormat() { return g_format.load(); }

std::string LogFields::Text() const {
  std::string out;
  for (const auto& [key, value] : fields_) {
    absl::StrAppend(&out, " ", key, "=");
    if (const auto* text = std::get_if<std::string>(&value)) {
      absl::StrAppend(&out, text->empty() ? "-" : *text);
    } else if (const auto* number = std::get_if<double>(&value)) {
      if (*number == std::floor(*number) && std::fabs(*number) < 1e15) {
        absl::StrAppend(&out, static_cast<int64_t>(*number));
      } else {
        absl::StrAppend(&out, absl::StrFormat("%.3f", *number));
      }
    } else {
      absl::StrAppend(&out, std::get<bool>(value) ? "true" : "false");
    }
  }
  return out;
}

void LogFields::AddTo(google::protobuf::Struct& out) const {
  for (const auto& [key, value] : fields_) {
    google::protobuf::Value& v = (*out.mutable_fields())[std::string(key)];
    if (const auto* text = std::get_if<std::string>(&value)) {
      v.set_string_value(*text);
    } else if (const auto* number = std::get_if<double>(&value)) {
      v.set_number_value(*number);
    } else {
      v.set_bool_value(std::get<bool>(value));
    }
  }
}

void Log(LogLevel level, absl::string_view message) {
  if (GetLogFormat() == LogFormat::kJson) {
    return WriteJson(level, message, nullptr);
  }
  WriteLine(absl::StrCat(Now(), " ", Tag(level), " ", message));
}

void LogEvent(LogLevel level, absl::string_view message,
              const LogFields& fields) {
  if (GetLogFormat() == LogFormat::kJson) {
    return WriteJson(level, message, &fields);
  }
  WriteLine(absl::StrCat(Now(), " ", Tag(level), " ", message, fields.Text()));
}

}  // namespace egress
