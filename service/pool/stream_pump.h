// StreamPump: carries one streamed response from the worker that reads the
// upstream to the caller's writes, with bounded memory and no gRPC in sight.
//
// Two threads meet here. The worker pushes the head and then body bytes in
// (StartHead, Push) as the upstream sends them; the transport (gRPC's
// write reactor in production, a test's fake Writer otherwise) takes them
// out one write at a time and reports each write's end (OnWriteDone).
//
//   - At most one write is in flight. A write starts the moment bytes arrive
//     and none is in flight, so an event reaches the caller as soon as the
//     upstream sends it; while one is in flight, bytes gather and go out
//     together, up to max_chunk per write.
//   - Backpressure: while a write is in flight and max_chunk bytes are
//     pending, Push blocks the worker, which stops reading the upstream, whose
//     TCP window then closes. Memory per stream is one write plus max_chunk.
//     A caller that takes nothing for idle_timeout (or past the deadline)
//     ends the stream: kSlowReader.
//   - FinishWhenDrained(status) answers once every pending byte is written;
//     Finish is called exactly once, by whichever comes last of it and the
//     final OnWriteDone.
//   - Cancel(why) (the caller went away) drops what is pending, wakes a
//     blocked Push, and makes every later StartHead or Push refuse: kCancelled.
//
// Usage (the gRPC side, see egress_service.cc):
//   StreamPump pump(writer, clock, limits);
//   worker:    if (pump.StartHead()) writer_starts_head_write();
//              pump.Push(data, size) ...; pump.FinishWhenDrained(status);
//   transport: OnWriteDone(ok) -> pump.OnWriteDone(ok)
//
// Thread safety: thread-safe; the Writer is called without the pump's lock
// held, and never twice at once.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "service/base/clock.h"
#include "service/base/deadline.h"
#include "service/base/defaults.h"

namespace egress {

// Why a stream was abandoned on purpose: the `reason` label of
// egress_stream_aborts_total.
enum class StreamAbortReason {
  kCancelled,   // the caller went away or its deadline passed
  kSlowReader,  // the caller read nothing for --stream_idle_timeout
  kTooLarge,    // over --max_stream_bytes
};
inline constexpr int kStreamAbortReasonCount = 3;
// "cancelled", "slow_reader", "too_large".
const char* StreamAbortReasonName(StreamAbortReason reason);

class StreamPump {
 public:
  // Where the bytes go. Each method is called without the pump's lock and
  // never while another write is in flight.
  class Writer {
   public:
    virtual ~Writer() = default;
    // Starts writing `bytes` of body; OnWriteDone follows when it is done.
    virtual void StartBodyWrite(std::string bytes) = 0;
    // Ends the stream with `status`. Called once; the pump must not be
    // touched afterwards (the writer may destroy it).
    virtual void Finish(const absl::Status& status) = 0;
  };

  struct Limits {
    // The most bytes one write carries, and the pending bytes at which Push
    // waits for the write in flight.
    size_t max_chunk = defaults::kStreamChunkBytes;
    // The longest Push waits for the caller to take a write.
    std::chrono::nanoseconds idle_timeout = defaults::kStreamIdleTimeout;
    // Body bytes after which the stream fails (kTooLarge); 0 is unlimited.
    size_t max_bytes = 0;
  };

  // REQUIRES: `writer` and `clock` outlive the pump.
  StreamPump(Writer& writer, const Clock& clock, const Limits& limits);

  // The worker side.
  // Bounds Push's waits by the call's deadline (none before it is set).
  void SetDeadline(const Deadline& deadline);
  // The head is about to be written: true when the caller should start that
  // write (it counts as the write in flight), false when the stream was
  // cancelled (abandon the exchange).
  bool StartHead();
  // Body bytes, in order: false when the exchange must be abandoned
  // (abort_status() and abort_reason() say why).
  bool Push(const char* data, size_t size);
  // Answers with `status` once every pending byte is written.
  void FinishWhenDrained(const absl::Status& status);

  // The transport side.
  void OnWriteDone(bool ok);
  // The caller went away; `why` is the status a refused Push reports.
  void Cancel(absl::Status why);

  // After StartHead or Push refused: why.
  absl::Status abort_status() const;
  // Workers blocked in Push right now, waiting for the caller (backpressure).
  int workers_waiting() const;
  // The reason to count for an exchange that ended with `result`, when it was
  // abandoned on purpose (refused by the pump, or cancelled).
  std::optional<StreamAbortReason> AbandonReason(
      const absl::Status& result) const;
  // The status given to FinishWhenDrained (UNKNOWN before).
  absl::Status status() const;

 private:
  bool RefuseLocked(absl::Status status, StreamAbortReason reason);
  // Takes up to max_chunk pending bytes for the next write.
  std::string NextChunkLocked();

  Writer& writer_;
  const Clock& clock_;
  const Limits limits_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Deadline> deadline_;                          // guarded by mu_
  std::string pending_;                                       // guarded by mu_
  bool write_in_flight_ = false;                              // guarded by mu_
  bool write_failed_ = false;                                 // guarded by mu_
  bool finish_requested_ = false;                             // guarded by mu_
  bool cancelled_ = false;                                    // guarded by mu_
  int workers_waiting_ = 0;                                   // guarded by mu_
  absl::Status cancel_status_;                                // guarded by mu_
  size_t streamed_ = 0;                                       // guarded by mu_
  absl::Status abort_status_;                                 // guarded by mu_
  std::optional<StreamAbortReason> abort_reason_;             // guarded by mu_
  absl::Status status_ = absl::UnknownError("not finished");  // guarded by mu_
};

}  // namespace egress
