#include "service/log.h"

#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
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
               const google::protobuf::Struct* fields) {
  google::protobuf::Struct line;
  auto& out = *line.mutable_fields();
  out["time"].set_string_value(Now());
  out["level"].set_string_value(Tag(level));
  out["message"].set_string_value(std::string(message));
  if (fields != nullptr) {
    for (const auto& [key, value] : fields->fields()) out[key] = value;
  }
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

google::protobuf::Value& LogFields::Slot(absl::string_view key) {
  absl::StrAppend(&order_, key, absl::string_view("\0", 1));
  return (*fields_.mutable_fields())[std::string(key)];
}

LogFields& LogFields::Add(absl::string_view key, absl::string_view value) {
  Slot(key).set_string_value(std::string(value));
  return *this;
}

LogFields& LogFields::Add(absl::string_view key, double value) {
  Slot(key).set_number_value(value);
  return *this;
}

LogFields& LogFields::Add(absl::string_view key, bool value) {
  Slot(key).set_bool_value(value);
  return *this;
}

std::string LogFields::Text() const {
  std::string out;
  for (absl::string_view key :
       absl::StrSplit(order_, absl::string_view("\0", 1), absl::SkipEmpty())) {
    const google::protobuf::Value& v = fields_.fields().at(std::string(key));
    absl::StrAppend(&out, " ", key, "=");
    switch (v.kind_case()) {
      case google::protobuf::Value::kStringValue:
        absl::StrAppend(&out,
                        v.string_value().empty() ? "-" : v.string_value());
        break;
      case google::protobuf::Value::kNumberValue:
        if (v.number_value() == std::floor(v.number_value()) &&
            std::fabs(v.number_value()) < 1e15) {
          absl::StrAppend(&out, static_cast<int64_t>(v.number_value()));
        } else {
          absl::StrAppend(&out, absl::StrFormat("%.3f", v.number_value()));
        }
        break;
      case google::protobuf::Value::kBoolValue:
        absl::StrAppend(&out, v.bool_value() ? "true" : "false");
        break;
      default:
        absl::StrAppend(&out, "-");
    }
  }
  return out;
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
    return WriteJson(level, message, &fields.fields());
  }
  WriteLine(absl::StrCat(Now(), " ", Tag(level), " ", message, fields.Text()));
}

}  // namespace egress
