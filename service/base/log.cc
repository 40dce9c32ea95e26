#include "service/base/log.h"

#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

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

// Appends the time as 2026-11-30T16:05:13.500Z. The date and time up to the
// second are formatted once a second per thread, the milliseconds by hand: a
// busy egressd writes a line per call.
void AppendNow(std::string& out) {
  thread_local int64_t cached_second = -1;
  thread_local std::string cached;  // "2026-11-30T16:05:13"
  const int64_t millis = absl::ToUnixMillis(absl::Now());
  const int64_t second = millis >= 0 ? millis / 1000 : (millis - 999) / 1000;
  if (second != cached_second) {
    cached =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(second),
                         absl::UTCTimeZone());
    cached_second = second;
  }
  const int ms = static_cast<int>(millis - second * 1000);
  const char fraction[] = {'.', static_cast<char>('0' + ms / 100),
                           static_cast<char>('0' + ms / 10 % 10),
                           static_cast<char>('0' + ms % 10), 'Z'};
  out.append(cached).append(fraction, sizeof(fraction));
}

std::string Now() {
  std::string out;
  AppendNow(out);
  return out;
}

// Appends `number` with three decimals, as printf's "%.3f" would.
void AppendFixed3(std::string& out, double number) {
  const double thousandths = std::round(number * 1000);
  if (!(std::fabs(thousandths) < 9e15)) {  // NaN, infinities, huge values
    out.append(absl::StrFormat("%.3f", number));
    return;
  }
  const int64_t n = static_cast<int64_t>(thousandths);
  if (n < 0) out.push_back('-');
  const uint64_t magnitude = n < 0 ? -static_cast<uint64_t>(n) : n;
  absl::StrAppend(&out, magnitude / 1000);
  const unsigned fraction = static_cast<unsigned>(magnitude % 1000);
  const char digits[] = {'.', static_cast<char>('0' + fraction / 100),
                         static_cast<char>('0' + fraction / 10 % 10),
                         static_cast<char>('0' + fraction % 10)};
  out.append(digits, sizeof(digits));
}

// Writes all of `bytes` to stderr (a batch may be larger than a pipe takes in
// one write); gives up on an error, since there is nowhere to report it.
void WriteAll(absl::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = write(STDERR_FILENO, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// The pending batch while a LogBatching exists. Never destroyed: a thread may
// log while the process exits.
struct Batch {
  std::mutex mu;
  std::string pending;    // whole lines; guarded by mu
  bool active = false;    // guarded by mu
  bool stopping = false;  // guarded by mu
  std::condition_variable wake;
  // Held while a batch is written, taken before mu is released: batches go
  // out in the order they were cut.
  std::mutex write_mu;
  std::thread flusher;
};
Batch& TheBatch() {
  static Batch* batch = new Batch;
  return *batch;
}
constexpr size_t kMaxPending = 64 << 10;

// Cuts the pending batch and writes it; releases `lock` (on batch.mu).
void WritePending(Batch& batch, std::unique_lock<std::mutex>& lock) {
  std::string out;
  out.swap(batch.pending);
  std::lock_guard<std::mutex> writing(batch.write_mu);
  lock.unlock();
  WriteAll(out);
}

// Writes `line` (and a newline) whole: at once, or into the batch.
void WriteLine(std::string line, bool urgent) {
  line.push_back('\n');
  Batch& batch = TheBatch();
  std::unique_lock<std::mutex> lock(batch.mu);
  if (!batch.active) {
    lock.unlock();
    WriteAll(line);
    return;
  }
  const bool first = batch.pending.empty();
  batch.pending.append(line);
  if (urgent || batch.pending.size() >= kMaxPending) {
    WritePending(batch, lock);
  } else if (first) {
    lock.unlock();
    batch.wake.notify_one();  // the flusher starts the batch's interval
  }
}

// The start of a text line: time, level and message.
std::string TextLine(LogLevel level, absl::string_view message,
                     size_t reserve) {
  std::string line;
  line.reserve(32 + message.size() + reserve);
  AppendNow(line);
  line.append(" ")
      .append(Tag(level))
      .append(" ")
      .append(message.data(), message.size());
  return line;
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
  WriteLine(std::move(text), level != LogLevel::kInfo);
}

}  // namespace

LogBatching::LogBatching(std::chrono::milliseconds interval) {
  Batch& batch = TheBatch();
  std::lock_guard<std::mutex> lock(batch.mu);
  batch.active = true;
  batch.stopping = false;
  batch.flusher = std::thread([&batch, interval] {
    std::unique_lock<std::mutex> lock(batch.mu);
    while (!batch.stopping) {
      // Asleep while nothing is pending; then gathers lines for `interval`.
      batch.wake.wait(lock,
                      [&] { return batch.stopping || !batch.pending.empty(); });
      batch.wake.wait_for(lock, interval, [&] { return batch.stopping; });
      if (!batch.pending.empty()) {
        WritePending(batch, lock);
        lock.lock();
      }
    }
  });
}

LogBatching::~LogBatching() {
  Batch& batch = TheBatch();
  std::thread flusher;
  {
    std::unique_lock<std::mutex> lock(batch.mu);
    batch.stopping = true;
    flusher = std::move(batch.flusher);
  }
  batch.wake.notify_all();
  flusher.join();
  // Lines logged from here on are written at once.
  std::unique_lock<std::mutex> lock(batch.mu);
  batch.active = false;
  WritePending(batch, lock);
}

void SetLogFormat(LogFormat format) { g_format.store(format); }
LogFormat GetLogFormat() { return g_format.load(); }

void LogFields::AppendText(std::string& out) const {
  for (const auto& [key, value] : fields_) {
    out.append(" ").append(key.data(), key.size()).append("=");
    if (const auto* text = std::get_if<std::string>(&value)) {
      out.append(text->empty() ? "-" : *text);
    } else if (const auto* number = std::get_if<double>(&value)) {
      if (*number == std::floor(*number) && std::fabs(*number) < 1e15) {
        absl::StrAppend(&out, static_cast<int64_t>(*number));
      } else {
        AppendFixed3(out, *number);
      }
    } else {
      out.append(std::get<bool>(value) ? "true" : "false");
    }
  }
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
  WriteLine(TextLine(level, message, 0), level != LogLevel::kInfo);
}

void LogEvent(LogLevel level, absl::string_view message,
              const LogFields& fields) {
  if (GetLogFormat() == LogFormat::kJson) {
    return WriteJson(level, message, &fields);
  }
  std::string line = TextLine(level, message, 224);
  fields.AppendText(line);
  WriteLine(std::move(line), level != LogLevel::kInfo);
}

}  // namespace egress
