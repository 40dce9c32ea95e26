// UpstreamStream: the byte stream of one upstream exchange as httplib sees it,
// with the exchange's deadline, idle timeout and head limits enforced on every
// read and write.
//
// httplib's own timeouts restart with every read, so an upstream that drips one
// byte at a time could hold a worker forever; its head parser has compile-time
// limits and trusts what it reads. UpstreamStream sits between httplib and the
// socket (see third_party/httplib/egress.patch):
//   - before each read or write it waits on the socket for no longer than the
//     time left (or the idle timeout for reads, while streaming), so that one
//     deadline covers upload, head and body; a plain-TCP write is tried first
//     and waits only when the socket's buffer is full, and reads and writes
//     go to the socket (plain TCP) or to OpenSSL (TLS) directly: one poll a
//     read, none a plain-TCP write, one a TLS write;
//   - it reads the response head itself with a ResponseHeadReader, hands the
//     final head to `on_head`, and gives httplib a canonical head that frames
//     the body exactly as the reader decided;
//   - it reads from the socket in large blocks into its own buffer, so the
//     inner stream never holds bytes that a wait on the socket cannot see.
// Why an exchange failed is recorded in `failure()`, so the session never
// guesses a timeout from elapsed time.
//
// Thread safety: used by the one thread that runs the exchange.
#pragma once

#include <httplib.h>
#include <openssl/types.h>

#include <chrono>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "service/base/clock.h"
#include "service/base/deadline.h"
#include "service/transport/response_head.h"

namespace egress {

// What an exchange's stream needs to know, and what it found out.
struct UpstreamExchange {
  enum class Failure {
    kNone,
    kDeadline,  // the deadline passed while waiting on the upstream
    kIdle,      // the upstream sent nothing for idle_timeout
    kHead,      // the response head broke a limit or the syntax: head_error
    kRejected,  // on_head returned false
  };

  // The call's deadline: every wait on the upstream ends by it.
  Deadline deadline = Deadline::Never(RealClock::Get());
  // Longest wait for response bytes once the head has arrived; max() for none.
  std::chrono::nanoseconds idle_timeout = std::chrono::nanoseconds::max();
  HeadLimits limits;
  bool head_request = false;
  // Called once, with the final head, before httplib reads the body. Returns
  // false to abandon the exchange.
  std::function<bool(const ResponseHead&)> on_head;

  // Results.
  bool connected = false;  // the connection was made (and TLS set up)
  Failure failure = Failure::kNone;
  absl::Status head_error;
  // Bytes were left unread after the response (more than it framed, or data
  // nobody asked for): the connection must not carry another exchange.
  bool leftover = false;
  // When the connection was ready for the request (connected, and TLS set
  // up): the deadline's clock, set by the session's client.
  MonoTime ready_at{};
};

class UpstreamStream final : public httplib::Stream {
 public:
  // `inner` is httplib's stream over `fd` (and `ssl`, or nullptr for plain
  // TCP). `buffer` is scratch space the caller keeps from one exchange to the
  // next, so that none allocates. REQUIRES: all of them outlive this object.
  UpstreamStream(httplib::Stream& inner, int fd, SSL* ssl,
                 UpstreamExchange& exchange, std::string& buffer);

  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override;

  // After the exchange: whether bytes beyond the response are already there.
  bool HasUnreadBytes() const;

 private:
  // Waits until the socket can be read (or written); false, with the
  // exchange's failure set, when the deadline or idle timeout comes first.
  bool Wait(bool for_write);
  // The time left before the deadline; zero or less, with the exchange's
  // failure set to kDeadline, when it has passed.
  std::chrono::nanoseconds TimeLeft();
  // Reads the next block from the socket into buffer_; the bytes read, 0 at
  // the end of the stream, -1 on error or timeout.
  ssize_t Fill();
  // Reads until the final response head is in; false on any failure.
  bool ReadHead();
  // Serves bytes of from[offset, end); the count served.
  static size_t Serve(const char* from, size_t end, size_t& offset, char* ptr,
                      size_t size);

  httplib::Stream& inner_;
  const int fd_;
  SSL* const ssl_;
  UpstreamExchange& exchange_;
  bool head_done_ = false;
  std::string canonical_;  // the head httplib parses
  size_t canonical_offset_ = 0;
  std::string& buffer_;  // one block; [buffer_offset_, buffer_end_) unserved
  size_t buffer_offset_ = 0;
  size_t buffer_end_ = 0;
};

}  // namespace egress
