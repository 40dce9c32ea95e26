// ResponseHeadReader: reads one HTTP/1.x response head from an untrusted
// upstream, under limits, as its bytes arrive.
//
// Upstreams are hostile: a head may be endless, a line may never end, a status
// may be 600, framing may be ambiguous. The reader keeps at most
// `max_head_bytes` plus what one Append brings, checks every limit as soon as
// the bytes that breach it arrive (not after the whole head is in), skips
// interim 1xx responses (100 Continue, 103 Early Hints: their bytes count
// against the head budget), and decides how the body is framed (RFC 9112,
// section 6.3), so that httplib only ever parses a short canonical head
// written by CanonicalHead().
//
// Usage:
//   ResponseHeadReader reader(limits, /*head_request=*/false);
//   while (!reader.done()) {
//     RETURN_IF_ERROR(reader.Append(ReadSomeBytes()));   // errors are final
//   }
//   Use(reader.head());  reader.rest() is the start of the body.
//
// Thread safety: a value; one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "service/base/defaults.h"
#include "service/base/http_types.h"

namespace egress {

// Flag-settable bounds on a response head (--max_response_line_bytes,
// --max_response_headers, --max_response_head_bytes).
struct HeadLimits {
  // The status line and each header line, without the line ending.
  size_t max_line_bytes = defaults::kMaxResponseLineBytes;
  // Header fields in the final head.
  size_t max_headers = defaults::kMaxResponseHeaders;
  // The whole head, interim 1xx heads included.
  size_t max_head_bytes = defaults::kMaxResponseHeadBytes;
};

// How the body after a head is delimited.
enum class BodyFraming {
  kNone,           // no body: HEAD, 204, 304
  kContentLength,  // exactly content_length bytes
  kChunked,        // Transfer-Encoding ending in chunked
  kUntilClose,     // everything up to the connection's close
};

struct ResponseHead {
  int version_minor = 1;  // HTTP/1.<version_minor>
  int status = 0;
  // Every field as received, in order, names as sent, values without the
  // surrounding whitespace; obs-fold continuation lines joined with one space.
  HeaderList headers;
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;  // with kContentLength
  bool keep_alive = true;       // the connection may carry another exchange
  int interim_responses = 0;    // 1xx heads skipped before this one
};

class ResponseHeadReader {
 public:
  // `head_request`: the request was HEAD, so no response to it has a body.
  ResponseHeadReader(const HeadLimits& limits, bool head_request);

  // Takes the next bytes from the upstream. Returns an error when the bytes
  // can never make a valid head (a limit or the syntax); UNAVAILABLE, with a
  // message that names the limit or the problem. Must not be called after an
  // error or once done().
  absl::Status Append(absl::string_view bytes);

  // A final (non-1xx) head has been read.
  bool done() const { return done_; }
  // REQUIRES: done().
  const ResponseHead& head() const { return head_; }
  // REQUIRES: done(). Bytes after the head: the start of the body (or bytes
  // that no response may have, which the caller must not reuse).
  absl::string_view rest() const;

  // The head httplib parses in place of the upstream's: the status line and
  // only the fields that frame the body, so that httplib frames it exactly as
  // head() says. REQUIRES: done().
  std::string CanonicalHead() const;

 private:
  // Parses buffer_[head_start_, end) as one complete head.
  absl::Status ParseHead(size_t end);
  absl::Status ParseStatusLine(absl::string_view line);
  absl::Status ParseFraming();
  absl::Status HeadTooLarge() const;

  const HeadLimits limits_;
  const bool head_request_;
  std::string buffer_;        // bytes of the current head (and what followed)
  size_t scanned_ = 0;        // buffer_ before this holds no unseen line end
  size_t line_start_ = 0;     // start of the line being read
  size_t lines_ = 0;          // lines of the current head seen so far
  size_t interim_bytes_ = 0;  // bytes of the 1xx heads already skipped
  size_t rest_start_ = 0;     // with done_: where the body starts
  bool done_ = false;
  ResponseHead head_;
};

}  // namespace egress
