#include "service/transport/response_head.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/base/error_details.h"

namespace egress {
namespace {

// Invariants: buffer_ holds the current head from its first byte (interim heads
// already skipped are erased, their size kept in interim_bytes_); every line
// that ends before scanned_ has been checked against the limits.

absl::Status Malformed(absl::string_view what, absl::string_view line) {
  constexpr size_t kShown = 48;
  return absl::UnavailableError(
      absl::StrCat("malformed response: ", what, " \"",
                   absl::CHexEscape(line.substr(0, kShown)),
                   line.size() > kShown ? "...\"" : "\""));
}

// "<before>--flag=<value><after>", with reason HEAD_TOO_LARGE.
absl::Status OverLimit(absl::string_view before, absl::string_view flag,
                       size_t value, absl::string_view after = "") {
  const std::string limit = absl::StrCat(flag, "=", value);
  return WithReason(absl::UnavailableError(absl::StrCat(before, limit, after)),
                    ErrorReason::kHeadTooLarge, {{"limit", limit}});
}

// RFC 9110, 5.6.2: tchar.
bool IsTokenChar(unsigned char c) {
  return absl::ascii_isalnum(c) || absl::StrContains("!#$%&'*+-.^_`|~", c);
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return IsTokenChar(static_cast<unsigned char>(c));
  });
}

// Field values may carry any byte but NUL, CR and LF, and the controls other
// than HTAB (RFC 9110, 5.5): obs-text (0x80-0xFF) passes, untouched.
bool IsFieldValue(absl::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\t') || c == 0x7f;
  });
}

absl::string_view TrimWhitespace(absl::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// A comma-separated list contains `token` (case-insensitive).
bool ListHas(absl::string_view list, absl::string_view token) {
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    if (absl::EqualsIgnoreCase(TrimWhitespace(item), token)) return true;
  }
  return false;
}

}  // namespace

ResponseHeadReader::ResponseHeadReader(const HeadLimits& limits,
                                       bool head_request)
    : limits_(limits), head_request_(head_request) {}

absl::string_view ResponseHeadReader::rest() const {
  return absl::string_view(buffer_).substr(rest_start_);
}

absl::Status ResponseHeadReader::Append(absl::string_view bytes) {
  buffer_.append(bytes.data(), bytes.size());
  while (!done_) {
    const size_t newline = buffer_.find('\n', scanned_);
    if (newline == std::string::npos) break;
    scanned_ = newline + 1;
    size_t length = newline - line_start_;
    if (length > 0 && buffer_[newline - 1] == '\r') --length;
    if (length > limits_.max_line_bytes) {
      return OverLimit(
          absl::StrCat("response ", lines_ == 0 ? "status" : "header",
                       " line over "),
          "--max_response_line_bytes", limits_.max_line_bytes);
    }
    const bool blank = length == 0 && lines_ > 0;
    ++lines_;
    line_start_ = scanned_;
    if (!blank) {
      if (lines_ - 1 > limits_.max_headers) {
        return OverLimit("response has over ", "--max_response_headers",
                         limits_.max_headers, " header fields");
      }
      continue;
    }
    absl::Status parsed = ParseHead(scanned_);
    if (!parsed.ok()) return parsed;
    if (done_) {
      rest_start_ = scanned_;
      break;
    }
    // An interim 1xx head: drop it and read the next one.
    interim_bytes_ += scanned_;
    buffer_.erase(0, scanned_);
    scanned_ = line_start_ = lines_ = 0;
    head_ = ResponseHead{head_.version_minor,        0, {},
                         BodyFraming::kNone,         0, true,
                         head_.interim_responses + 1};
  }
  if (done_) return absl::OkStatus();
  const size_t partial = buffer_.size() - line_start_;
  // One byte of slack: the line's CR may have come without its LF yet.
  if (partial > limits_.max_line_bytes + 1) {
    return OverLimit(
        absl::StrCat("response ", lines_ == 0 ? "status" : "header",
                     " line over "),
        "--max_response_line_bytes", limits_.max_line_bytes);
  }
  if (interim_bytes_ + buffer_.size() > limits_.max_head_bytes) {
    return HeadTooLarge();
  }
  return absl::OkStatus();
}

absl::Status ResponseHeadReader::HeadTooLarge() const {
  return OverLimit("response head over ", "--max_response_head_bytes",
                   limits_.max_head_bytes,
                   head_.interim_responses > 0
                       ? absl::StrCat(" (after ", head_.interim_responses,
                                      " interim 1xx responses)")
                       : "");
}

absl::Status ResponseHeadReader::ParseHead(size_t end) {
  if (interim_bytes_ + end > limits_.max_head_bytes) return HeadTooLarge();
  absl::string_view all = absl::string_view(buffer_).substr(0, end);
  // Most heads have fewer: no reallocation while they are read.
  head_.headers.reserve(16);
  bool first = true;
  for (absl::string_view line : absl::StrSplit(all, '\n')) {
    absl::ConsumeSuffix(&line, "\r");
    if (first) {
      first = false;
      absl::Status status = ParseStatusLine(line);
      if (!status.ok()) return status;
      continue;
    }
    if (line.empty()) break;  // the blank line that ends the head
    if (line.find('\r') != absl::string_view::npos) {
      return Malformed("bare CR in header line", line);
    }
    if (line.front() == ' ' || line.front() == '\t') {
      // obs-fold (RFC 9112, 5.2): a proxy replaces it with one space.
      if (head_.headers.empty()) {
        return Malformed("continuation line before any header", line);
      }
      absl::string_view more = TrimWhitespace(line);
      if (!IsFieldValue(more)) {
        return Malformed("control character in header value", line);
      }
      absl::StrAppend(&head_.headers.back().second, " ", more);
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      return Malformed("header line without a colon", line);
    }
    // Whitespace before the colon: a proxy removes it (RFC 9112, 5.1).
    absl::string_view name = TrimWhitespace(line.substr(0, colon));
    absl::string_view value = TrimWhitespace(line.substr(colon + 1));
    if (!IsToken(name)) return Malformed("invalid header name", line);
    if (!IsFieldValue(value)) {
      return Malformed("control character in header value", line);
    }
    head_.headers.emplace_back(std::string(name), std::string(value));
  }
  if (head_.status == 101) {
    return absl::UnavailableError(
        "upstream switched protocols (101) although no upgrade was asked");
  }
  if (head_.status < 200) return absl::OkStatus();  // interim: skipped
  absl::Status framing = ParseFraming();
  if (!framing.ok()) return framing;
  done_ = true;
  return absl::OkStatus();
}

absl::Status ResponseHeadReader::ParseStatusLine(absl::string_view line) {
  // HTTP-version SP 3DIGIT [ SP reason-phrase ]; the reason is ignored.
  if (line.size() < 12 || !absl::StartsWith(line, "HTTP/1.") ||
      (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
      !absl::ascii_isdigit(line[9]) || !absl::ascii_isdigit(line[10]) ||
      !absl::ascii_isdigit(line[11]) || (line.size() > 12 && line[12] != ' ')) {
    return Malformed("status line", line);
  }
  head_.version_minor = line[7] - '0';
  head_.status =
      (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (head_.status < 100 || head_.status > 599) {
    return absl::UnavailableError(
        absl::StrCat("malformed response: status code ", line.substr(9, 3),
                     " is outside 100-599"));
  }
  return absl::OkStatus();
}

absl::Status ResponseHeadReader::ParseFraming() {
  bool has_length = false;
  uint64_t length = 0;
  std::string transfer_coding;  // the last coding of Transfer-Encoding
  bool has_transfer_encoding = false;
  bool close = head_.version_minor == 0;
  for (const auto& [name, value] : head_.headers) {
    if (absl::EqualsIgnoreCase(name, "Content-Length")) {
      // A list of equal values is one value (RFC 9110, 8.6); anything else is
      // a framing attack or a broken upstream.
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        item = TrimWhitespace(item);
        uint64_t n = 0;
        if (item.empty() || item.size() > 18 ||
            !std::all_of(item.begin(), item.end(), absl::ascii_isdigit) ||
            !absl::SimpleAtoi(item, &n)) {
          return Malformed("invalid Content-Length", value);
        }
        if (has_length && n != length) {
          return Malformed("conflicting Content-Length values", value);
        }
        has_length = true;
        length = n;
      }
    } else if (absl::EqualsIgnoreCase(name, "Transfer-Encoding")) {
      has_transfer_encoding = true;
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        item = TrimWhitespace(item);
        if (!item.empty()) transfer_coding = absl::AsciiStrToLower(item);
      }
    } else if (absl::EqualsIgnoreCase(name, "Connection")) {
      if (ListHas(value, "close")) close = true;
      if (head_.version_minor == 0 && ListHas(value, "keep-alive")) {
        close = false;
      }
    }
  }
  const bool bodyless =
      head_request_ || head_.status == 204 || head_.status == 304;
  if (has_length && has_transfer_encoding && !bodyless) {
    return absl::UnavailableError(
        "malformed response: both Content-Length and Transfer-Encoding "
        "(ambiguous framing)");
  }
  if (bodyless) {
    head_.framing = BodyFraming::kNone;
  } else if (has_transfer_encoding) {
    // Chunked must come last, or the body runs to the close (RFC 9112, 6.3).
    head_.framing = transfer_coding == "chunked" ? BodyFraming::kChunked
                                                 : BodyFraming::kUntilClose;
  } else if (has_length) {
    head_.framing = BodyFraming::kContentLength;
    head_.content_length = length;
  } else {
    head_.framing = BodyFraming::kUntilClose;
  }
  if (head_.framing == BodyFraming::kUntilClose) close = true;
  head_.keep_alive = !close;
  return absl::OkStatus();
}

std::string ResponseHeadReader::CanonicalHead() const {
  std::string out =
      absl::StrCat("HTTP/1.", head_.version_minor, " ", head_.status, "\r\n");
  switch (head_.framing) {
    case BodyFraming::kContentLength:
      absl::StrAppend(&out, "Content-Length: ", head_.content_length, "\r\n");
      break;
    case BodyFraming::kChunked:
      out += "Transfer-Encoding: chunked\r\n";
      break;
    case BodyFraming::kNone:
    case BodyFraming::kUntilClose:
      break;
  }
  if (!head_.keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  return out;
}

}  // namespace egress
