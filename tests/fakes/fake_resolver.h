// FakeResolver: a Resolver whose answers the test sets, so that no test sends a
// query to the machine's name server. Unknown names fail like NXDOMAIN.
//
// Thread safety: thread-safe.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "service/dns_cache.h"

namespace egress {

class FakeResolver final : public Resolver {
 public:
  void Set(const std::string& host, const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    answers_[host] = address;
  }
  void Remove(const std::string& host) {
    std::lock_guard<std::mutex> lock(mu_);
    answers_.erase(host);
  }
  int calls() const { return calls_.load(); }

  absl::StatusOr<std::string> Resolve(const std::string& host) override {
    ++calls_;
    std::lock_guard<std::mutex> lock(mu_);
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
  std::map<std::string, std::string> answers_;  // guarded by mu_
};

}  // namespace egress
