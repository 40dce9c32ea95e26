#include "service/transport/dns_cache.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace egress {

bool IsIpLiteral(const std::string& host) {
  in6_addr v6;
  in_addr v4;
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

absl::StatusOr<std::vector<std::string>> SystemResolver::Resolve(
    const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* result = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &result);
  if (rc != 0 || result == nullptr) {
    return absl::UnavailableError(absl::StrCat("dns: cannot resolve host \"",
                                               host, "\": ", gai_strerror(rc)));
  }
  std::vector<std::string> addresses;
  for (const addrinfo* a = result; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* addr =
        a->ai_family == AF_INET6
            ? static_cast<const void*>(
                  &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr)
            : static_cast<const void*>(
                  &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr);
    if (inet_ntop(a->ai_family, addr, text, sizeof(text)) == nullptr) continue;
    if (std::find(addresses.begin(), addresses.end(), text) ==
        addresses.end()) {
      addresses.emplace_back(text);
    }
  }
  freeaddrinfo(result);
  if (addresses.empty()) {
    return absl::UnavailableError(
        absl::StrCat("dns: cannot resolve host \"", host, "\": no address"));
  }
  return addresses;
}

DnsCache::DnsCache(Resolver& resolver, const Clock& clock,
                   const DnsCacheOptions& options)
    : resolver_(resolver), clock_(clock), options_(options) {}

DnsCache::~DnsCache() {
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [this] { return threads_ == 0; });
}

absl::StatusOr<DnsCache::Answer> DnsCache::Lookup(const std::string& host,
                                                  const Deadline& deadline) {
  if (IsIpLiteral(host)) return Answer{{host}, MonoTime::max()};
  std::unique_lock<std::mutex> lock(mu_);
  const auto cached = [&]() -> const Entry* {
    auto it = entries_.find(host);
    return it != entries_.end() && it->second.expires > clock_.Now()
               ? &it->second
               : nullptr;
  };
  if (const Entry* entry = cached()) {
    if (entry->result.code != absl::StatusCode::kOk) {
      return entry->result.status();
    }
    return Answer{entry->result.addresses, entry->expires};
  }
  std::shared_ptr<Inflight>& slot = inflight_[host];
  if (slot == nullptr) {
    if (threads_ >= options_.max_inflight) {
      inflight_.erase(host);
      return absl::UnavailableError(absl::StrCat(
          "dns: cannot resolve host \"", host, "\": ", options_.max_inflight,
          " lookups already in flight"));
    }
    slot = std::make_shared<Inflight>();
    ++threads_;
    std::thread(&DnsCache::Resolve, this, host, slot).detach();
  }
  const std::shared_ptr<Inflight> inflight = slot;
  const auto answered = [&] { return inflight->done; };
  ++inflight->waiting;
  bool in_time = true;
  if (deadline.IsNever()) {
    done_.wait(lock, answered);
  } else {
    in_time = done_.wait_for(lock, deadline.Remaining(), answered);
  }
  --inflight->waiting;
  if (!in_time) {
    return absl::DeadlineExceededError(absl::StrCat(
        "dns: no answer for host \"", host, "\" before the deadline"));
  }
  if (inflight->result.code != absl::StatusCode::kOk) {
    return inflight->result.status();
  }
  const Entry* entry = cached();
  return Answer{inflight->result.addresses,
                entry != nullptr ? entry->expires : clock_.Now()};
}

int DnsCache::Waiting(const std::string& host) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = inflight_.find(host);
  return it != inflight_.end() ? it->second->waiting : 0;
}

DnsCache::Result DnsCache::Result::From(
    absl::StatusOr<std::vector<std::string>> resolved) {
  Result result;
  if (resolved.ok()) {
    result.addresses = *std::move(resolved);
  } else {
    result.code = resolved.status().code();
    result.error = std::string(resolved.status().message());
  }
  return result;
}

void DnsCache::Resolve(std::string host, std::shared_ptr<Inflight> inflight) {
  Result result = Result::From(resolver_.Resolve(host));
  std::lock_guard<std::mutex> lock(mu_);
  const MonoTime now = clock_.Now();
  EvictIfFull(now);
  const bool ok = result.code == absl::StatusCode::kOk;
  entries_.insert_or_assign(
      host, Entry{result, now + (ok ? options_.ttl : options_.negative_ttl)});
  inflight->result = std::move(result);
  inflight->done = true;
  inflight_.erase(host);
  --threads_;
  // Under the lock: once it is released, this thread touches nothing of the
  // cache, which the destructor may then destroy.
  done_.notify_all();
}

void DnsCache::Invalidate(const std::string& host) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(host);
}

size_t DnsCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

void DnsCache::EvictIfFull(MonoTime now) {
  if (entries_.size() < options_.max_entries) return;
  absl::erase_if(entries_,
                 [now](const auto& e) { return e.second.expires <= now; });
  while (entries_.size() >= options_.max_entries) {
    auto soonest = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.expires < soonest->second.expires) soonest = it;
    }
    entries_.erase(soonest);
  }
}

}  // namespace egress
