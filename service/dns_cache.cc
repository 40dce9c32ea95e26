#include "service/dns_cache.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace egress {

bool IsIpLiteral(const std::string& host) {
  in6_addr v6;
  in_addr v4;
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

absl::StatusOr<std::string> SystemResolver::Resolve(const std::string& host) {
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
  char text[INET6_ADDRSTRLEN] = {};
  const addrinfo* first = result;
  const void* addr =
      first->ai_family == AF_INET6
          ? static_cast<const void*>(
                &reinterpret_cast<const sockaddr_in6*>(first->ai_addr)
                     ->sin6_addr)
          : static_cast<const void*>(
                &reinterpret_cast<const sockaddr_in*>(first->ai_addr)
                     ->sin_addr);
  inet_ntop(first->ai_family, addr, text, sizeof(text));
  freeaddrinfo(result);
  return std::string(text);
}

DnsCache::DnsCache(Resolver& resolver, const Clock& clock,
                   const DnsCacheOptions& options)
    : resolver_(resolver), clock_(clock), options_(options) {}

absl::StatusOr<DnsCache::Answer> DnsCache::Lookup(const std::string& host) {
  const MonoTime now = clock_.Now();
  if (IsIpLiteral(host)) return Answer{host, MonoTime::max()};
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(host);
    if (it != entries_.end() && it->second.expires > now) {
      if (!it->second.result.ok()) return it->second.result.status();
      return Answer{*it->second.result, it->second.expires};
    }
  }
  // Two workers may resolve the same name at once; both answers are valid and
  // the later one wins. That is cheaper than making one wait for the other.
  absl::StatusOr<std::string> result = resolver_.Resolve(host);
  const MonoTime expires =
      now + (result.ok() ? options_.ttl : options_.negative_ttl);
  {
    std::lock_guard<std::mutex> lock(mu_);
    EvictIfFull(now);
    entries_.insert_or_assign(host, Entry{result, expires});
  }
  if (!result.ok()) return result.status();
  return Answer{*std::move(result), expires};
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
