// FakeResolver: a Resolver whose answers the test sets, so that no test sends a
// query to the machine's name server. Unknown names fail like NXDOMAIN.
//
// Thread safety: thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "service/transport/dns_cache.h"

namespace egress {

class FakeResolver final : public Resolver {
 public:
  void Set(const std::string& host, const std::string& address) {
    Set(host, std::vector<std::string>{address});
  }
  // Several addresses, in the order a resolver would prefer them.
  void Set(const std::string& host, std::vector<std::string> addresses) {
    std::lock_guard<std::mutex> lock(mu_);
    answers_[host] = std::move(addresses);
  }
  void Remove(const std::string& host) {
    std::lock_guard<std::mutex> lock(mu_);
    answers_.erase(host);
  }
  int calls() const { return calls_.load(); }
  // Lookups block from now on until Release(), like a name server that does
  // not answer.
  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = true;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = false;
    released_.notify_all();
  }

  absl::StatusOr<std::vector<std::string>> Resolve(
      const std::string& host) override {
    ++calls_;
    std::unique_lock<std::mutex> lock(mu_);
    released_.wait(lock, [this] { return !held_; });
    auto it = answers_.find(host);
    if (it == answers_.end()) {
      return absl::UnavailableError(
          absl::StrCat("dns: cannot resolve host \"", host,
                       "\": Name or service not known"));
    }
    return it->second;
  }

 private:
  std::atomic<int> calls_{0};
  std::mutex mu_;
  std::map<std::string, std::vector<std::string>> answers_;  // guarded by mu_
  bool held_ = false;                                        // guarded by mu_
  std::condition_variable released_;
};

}  // namespace egress
