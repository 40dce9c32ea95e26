// HttpSession: one keep-alive HTTP/1.1 connection to one origin, with the
// bookkeeping that decides when it must be replaced.
//
// A session wraps one httplib::Client. The client keeps its socket open between
// requests, so a second request to the same origin costs no connect. The
// session counts consecutive transport failures (connect error, reset, timeout,
// protocol error); any upstream answer resets the count. SessionCache drops the
// session when Broken() or Exhausted(), or when it has been idle too long.
//
// A request that fails on a reused connection before any response arrived is
// sent once more on a fresh connection when that is safe (idempotent method or
// an Idempotency-Key header): an upstream may close an idle connection at any
// moment. That retry is not a session error.
//
// Usage:
//   HttpSession session(origin, options, RealClock::Get(), observer);
//   absl::StatusOr<UpstreamResponse> r = session.Send(request, deadline);
//
// Thread safety: not thread-safe. One worker thread owns a session and is the
// only one to call it (httplib::Client must be used by one thread at a time).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "service/clock.h"
#include "service/http_types.h"
#include "service/session_observer.h"

namespace httplib {
class Client;
}

namespace egress {

struct SessionOptions {
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(5);
  // Consecutive failures after which the session is Broken().
  int max_errors = 3;
  // Requests after which the session is Exhausted(); 0 means unlimited.
  int64_t max_requests = 0;
  // Larger response bodies fail with RESOURCE_EXHAUSTED.
  size_t max_response_bytes = 64 << 20;
};

class HttpSession {
 public:
  // REQUIRES: `clock` and `observer` outlive the session.
  HttpSession(Origin origin, const SessionOptions& options, const Clock& clock,
              SessionObserver& observer);
  ~HttpSession();
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;

  // Sends `request` (whose origin must be this session's) and reads the whole
  // response. `deadline` bounds the exchange, retries included. Errors:
  // UNAVAILABLE (connect refused, reset, protocol error), DEADLINE_EXCEEDED,
  // RESOURCE_EXHAUSTED (response body over max_response_bytes).
  absl::StatusOr<UpstreamResponse> Send(const UpstreamRequest& request,
                                        MonoTime deadline);

  const Origin& origin() const { return origin_; }
  int consecutive_errors() const { return consecutive_errors_; }
  int64_t requests_served() const { return requests_served_; }
  MonoTime last_used() const { return last_used_; }

  // Too many consecutive failures: replace the session.
  bool Broken() const { return consecutive_errors_ >= options_.max_errors; }
  // Served its quota of requests: replace the session.
  bool Exhausted() const {
    return options_.max_requests > 0 &&
           requests_served_ >= options_.max_requests;
  }

 private:
  struct Attempt;
  absl::StatusOr<UpstreamResponse> SendOnce(const UpstreamRequest& request,
                                            MonoTime deadline,
                                            Attempt& attempt);

  const Origin origin_;
  const SessionOptions options_;
  const Clock& clock_;
  SessionObserver& observer_;
  std::unique_ptr<httplib::Client> client_;
  // Sockets the client has opened; bumped from httplib's socket callback, which
  // runs on the thread that calls Send.
  int64_t connections_opened_ = 0;
  int consecutive_errors_ = 0;
  int64_t requests_served_ = 0;
  MonoTime last_used_;
};

}  // namespace egress
