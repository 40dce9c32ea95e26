// ExchangeAbort and ExchangeCanceller: abandoning an upstream exchange from
// another thread, at once, without waiting on the upstream.
//
// An exchange is abandoned by shutting its socket down, so that every wait on
// the upstream ends. ExchangeAbort, owned by the session, knows which socket
// that is: while a new connection is being made, a duplicate it owns (whose
// number cannot be reused by another socket while it is open, even if httplib
// closes the original); while httplib processes an exchange, the
// connection's own socket, unregistered before httplib closes it; else none.
// It is also the ConnectWatchdog's target while a connect is watched.
//
// ExchangeCanceller links one call to the exchange that serves it (the
// caller went away, the drain is over). The session attaches it for the
// length of one exchange only: a Cancel reaches the exchange it was made for,
// now or when it starts, and never a later exchange on the same session.
//
// Thread safety: ExchangeCanceller is thread-safe. ExchangeAbort's Abort and
// AbortAtDeadline are thread-safe; everything else is for the session's
// owner thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "service/base/clock.h"
#include "service/transport/connect_watchdog.h"

namespace egress {

class ExchangeAbort;

class ExchangeCanceller {
 public:
  // Aborts the attached exchange at once, and any exchange attached later.
  // Never blocks on the upstream: it only shuts a socket down.
  void Cancel();
  bool cancelled() const;
  // Waits `d` between exchanges (a Retry-After); false, at once, when the
  // call is or gets cancelled.
  bool WaitFor(std::chrono::nanoseconds d);

 private:
  friend class ExchangeAbort;
  void Attach(ExchangeAbort* exchange);
  void Detach();

  mutable std::mutex mu_;
  std::condition_variable cancelled_cv_;
  ExchangeAbort* exchange_ = nullptr;  // guarded by mu_
  bool cancelled_ = false;             // guarded by mu_
};

class ExchangeAbort final : public ConnectWatchdog::Target {
 public:
  ExchangeAbort() = default;
  ~ExchangeAbort();
  ExchangeAbort(const ExchangeAbort&) = delete;
  ExchangeAbort& operator=(const ExchangeAbort&) = delete;

  // The start and end of an exchange; `canceller` (optional) is attached in
  // between.
  void Begin(ExchangeCanceller* canceller);
  void End(ExchangeCanceller* canceller);
  bool in_exchange() const { return in_exchange_; }  // owner thread only

  // The real-time deadline for connects of the attempt about to start: a new
  // socket is watched against it until EndConnect.
  void BeginConnect(MonoTime deadline) { connect_deadline_ = deadline; }
  void EndConnect();

  // A new socket, before its connect: kept (as a duplicate) for Abort, and
  // watched against the connect deadline.
  void OnNewSocket(int fd);
  // The connection is up and httplib processes the exchange on `fd`.
  void OnExchangeSocket(int fd);
  // httplib is about to close the connection's socket: no longer touch it.
  void OnSocketClosing();

  // Abandons the exchange in progress, if any; between exchanges, nothing.
  void Abort();
  // ConnectWatchdog: the deadline passed while connecting.
  void AbortAtDeadline() override;

  bool abort_requested();
  // What struck the exchange so far: a cancel, and the watchdog.
  struct Struck {
    bool cancelled = false;
    bool watchdog = false;
  };
  Struck struck();

 private:
  std::mutex mu_;
  int fd_ = -1;                   // guarded by mu_
  bool fd_owned_ = false;         // guarded by mu_
  bool in_exchange_ = false;      // guarded by mu_; written by the owner only
  bool abort_requested_ = false;  // guarded by mu_
  bool deadline_abort_ = false;   // guarded by mu_
  MonoTime connect_deadline_;     // owner only
  uint64_t watch_ = 0;            // owner only: the watchdog's entry; 0: none
};

}  // namespace egress
