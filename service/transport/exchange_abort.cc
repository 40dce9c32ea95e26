#include "service/transport/exchange_abort.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace egress {

void ExchangeCanceller::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (exchange_ != nullptr) exchange_->Abort();
  cancelled_cv_.notify_all();
}

bool ExchangeCanceller::WaitFor(std::chrono::nanoseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cancelled_cv_.wait_for(lock, d, [this] { return cancelled_; });
}

bool ExchangeCanceller::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

void ExchangeCanceller::Attach(ExchangeAbort* exchange) {
  std::lock_guard<std::mutex> lock(mu_);
  exchange_ = exchange;
  if (cancelled_) exchange_->Abort();
}

void ExchangeCanceller::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  exchange_ = nullptr;
}

ExchangeAbort::~ExchangeAbort() {
  EndConnect();
  if (fd_owned_) close(fd_);
}

void ExchangeAbort::Begin(ExchangeCanceller* canceller) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_exchange_ = true;
    abort_requested_ = false;
    deadline_abort_ = false;
  }
  // Once in the exchange, so that a cancel made before it aborts it at once.
  if (canceller != nullptr) canceller->Attach(this);
}

void ExchangeAbort::End(ExchangeCanceller* canceller) {
  // Before the exchange ends, so that the canceller never reaches the next.
  if (canceller != nullptr) canceller->Detach();
  std::lock_guard<std::mutex> lock(mu_);
  in_exchange_ = false;
  abort_requested_ = false;
  deadline_abort_ = false;
  // Between exchanges nothing is aborted: no descriptor is kept for it.
  if (fd_owned_) close(fd_);
  fd_ = -1;
  fd_owned_ = false;
}

void ExchangeAbort::EndConnect() {
  if (watch_ == 0) return;
  ConnectWatchdog::Get().Unwatch(watch_, connect_deadline_);
  watch_ = 0;
}

void ExchangeAbort::OnNewSocket(int fd) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (fd_owned_) close(fd_);
    fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    fd_owned_ = fd_ >= 0;
    if (abort_requested_ && fd_ >= 0) shutdown(fd_, SHUT_RDWR);
  }
  // Not under mu_: the watchdog takes its own lock, then mu_.
  if (watch_ == 0)
    watch_ = ConnectWatchdog::Get().Watch(this, connect_deadline_);
}

void ExchangeAbort::OnExchangeSocket(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_owned_) close(fd_);
  fd_ = fd;
  fd_owned_ = false;
  if (abort_requested_ || deadline_abort_) shutdown(fd, SHUT_RDWR);
}

void ExchangeAbort::OnSocketClosing() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_owned_) return;  // a duplicate: closed here, not by httplib
  fd_ = -1;
}

void ExchangeAbort::Abort() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!in_exchange_) return;
  abort_requested_ = true;
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
}

void ExchangeAbort::AbortAtDeadline() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!in_exchange_) return;
  deadline_abort_ = true;
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
}

bool ExchangeAbort::abort_requested() {
  std::lock_guard<std::mutex> lock(mu_);
  return abort_requested_;
}

ExchangeAbort::Struck ExchangeAbort::struck() {
  std::lock_guard<std::mutex> lock(mu_);
  return Struck{abort_requested_, deadline_abort_};
}

}  // namespace egress
