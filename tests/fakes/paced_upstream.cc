#include "tests/fakes/paced_upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <queue>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace egress {
namespace {

constexpr size_t kMaxHead = 64 << 10;

// One connection. Invariant: a connection serves one request at a time; the
// next request in `in` is parsed only when `mode` is back to kIdle.
struct Conn {
  enum class Mode { kIdle, kDelay, kEvents };
  int fd = -1;
  uint64_t id = 0;  // fds are reused; timers name a connection by its id
  std::string in;
  std::string out;
  size_t body_left = 0;  // request body bytes still to read and drop
  bool writing = false;  // EPOLLOUT is armed
  Mode mode = Mode::kIdle;
  bool head = false;
  int64_t due_us = 0;
  int events_left = 0;
  int every_ms = 0;
  int event_bytes = 0;
};

// (due_us, fd, id), earliest first.
using Timer = std::tuple<int64_t, int, uint64_t>;

size_t ContentLength(absl::string_view head) {
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (!absl::EqualsIgnoreCase(line.substr(0, colon), "content-length"))
      continue;
    size_t n = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)),
                         &n))
      return n;
  }
  return 0;
}

// counter += 1, and peak = max(peak, counter).
void AddAndTrackPeak(std::atomic<int64_t>& counter,
                     std::atomic<int64_t>& peak) {
  const int64_t now = counter.fetch_add(1) + 1;
  int64_t seen = peak.load();
  while (now > seen && !peak.compare_exchange_weak(seen, now)) {
  }
}

int Listen(int port, int* bound) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 4096) != 0) {
    std::perror("PacedUpstream: bind/listen");
    std::abort();
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *bound = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

int64_t PacedUpstream::NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t PacedUpstream::SentMicros(absl::string_view event) {
  if (!absl::ConsumePrefix(&event, "data: ")) return -1;
  int64_t sent = -1;
  if (!absl::SimpleAtoi(event.substr(0, event.find(' ')), &sent)) return -1;
  return sent;
}

PacedUpstream::PacedUpstream(int ports, int fixed_port) {
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
  for (int i = 0; i < ports; ++i) {
    int bound = 0;
    int fd = Listen(fixed_port, &bound);
    listeners_.push_back(fd);
    ports_.push_back(bound);
    ev.data.fd = fd;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
  }
  thread_ = std::thread([this] { Loop(); });
}

PacedUpstream::~PacedUpstream() {
  uint64_t one = 1;
  (void)!write(wake_, &one, sizeof(one));
  thread_.join();
  for (int fd : listeners_) close(fd);
  close(wake_);
  close(epoll_);
}

std::string PacedUpstream::Url(int i, absl::string_view path) const {
  return absl::StrCat("http://127.0.0.1:", ports_[i], path);
}

void PacedUpstream::Loop() {
  std::unordered_map<int, Conn> conns;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers;
  uint64_t next_id = 1;

  auto close_conn = [&](Conn& c) {
    const int fd = c.fd;  // erase must not read the key from what it destroys
    if (c.mode != Conn::Mode::kIdle) waiting_.fetch_sub(1);
    epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns.erase(fd);
    open_.fetch_sub(1);
  };
  // Sends what `c.out` holds; arms EPOLLOUT for the rest. False: c is closed.
  auto flush = [&](Conn& c) {
    while (!c.out.empty()) {
      ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      close_conn(c);
      return false;
    }
    bool want = !c.out.empty();
    if (want != c.writing) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      if (want) ev.events |= EPOLLOUT;
      ev.data.fd = c.fd;
      epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
      c.writing = want;
    }
    return true;
  };
  auto send_event = [&](Conn& c) {
    std::string event = absl::StrCat("data: ", NowMicros(), " ");
    const size_t size = static_cast<size_t>(c.event_bytes);
    if (event.size() + 2 < size) event.append(size - 2 - event.size(), 'x');
    event += "\n\n";
    absl::StrAppend(&c.out, absl::Hex(event.size()), "\r\n", event, "\r\n");
  };
  // Starts the requests `c.in` holds while c is idle. False: c is closed.
  auto serve = [&](Conn& c) {
    while (c.mode == Conn::Mode::kIdle) {
      size_t drop = std::min(c.body_left, c.in.size());
      c.in.erase(0, drop);
      c.body_left -= drop;
      if (c.body_left > 0) return true;
      size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (c.in.size() > kMaxHead) {
          close_conn(c);
          return false;
        }
        return true;
      }
      std::string head = c.in.substr(0, end + 2);
      c.in.erase(0, end + 4);
      c.body_left = ContentLength(head);
      std::vector<absl::string_view> line = absl::StrSplit(
          absl::string_view(head).substr(0, head.find("\r\n")), ' ');
      c.head = !line.empty() && line[0] == "HEAD";
      std::vector<absl::string_view> path =
          absl::StrSplit(line.size() > 1 ? line[1] : "", '/');
      int ms = 0, n = 0, bytes = 0;
      const int64_t now = NowMicros();
      if (path.size() == 3 && path[1] == "delay" &&
          absl::SimpleAtoi(path[2], &ms)) {
        c.mode = Conn::Mode::kDelay;
        AddAndTrackPeak(waiting_, peak_waiting_);
        c.due_us = now + ms * int64_t{1000};
        timers.emplace(c.due_us, c.fd, c.id);
      } else if (path.size() == 5 && path[1] == "events" &&
                 absl::SimpleAtoi(path[2], &n) &&
                 absl::SimpleAtoi(path[3], &ms) &&
                 absl::SimpleAtoi(path[4], &bytes) && n > 0 && ms >= 0) {
        c.out +=
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
        c.mode = Conn::Mode::kEvents;
        AddAndTrackPeak(waiting_, peak_waiting_);
        c.events_left = n;
        c.every_ms = ms;
        c.event_bytes = std::max(bytes, 40);
        c.due_us = now + ms * int64_t{1000};
        timers.emplace(c.due_us, c.fd, c.id);
      } else {
        c.out += "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n";
        if (!c.head) c.out += "not found";
        answered_.fetch_add(1);
      }
      if (!flush(c)) return false;
    }
    return true;
  };
  auto fire = [&](Conn& c) {
    if (c.mode == Conn::Mode::kDelay) {
      c.out += "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
      if (!c.head) c.out += "ok";
      c.mode = Conn::Mode::kIdle;
      waiting_.fetch_sub(1);
      answered_.fetch_add(1);
    } else {
      send_event(c);
      if (--c.events_left == 0) {
        c.out += "0\r\n\r\n";
        c.mode = Conn::Mode::kIdle;
        waiting_.fetch_sub(1);
        answered_.fetch_add(1);
      } else {
        // On a fixed schedule: a late event does not delay the next ones.
        c.due_us += c.every_ms * int64_t{1000};
        timers.emplace(c.due_us, c.fd, c.id);
      }
    }
    if (flush(c)) serve(c);
  };

  std::vector<epoll_event> events(1024);
  for (;;) {
    int timeout = -1;
    if (!timers.empty()) {
      int64_t wait = std::get<0>(timers.top()) - NowMicros();
      timeout = wait <= 0 ? 0 : static_cast<int>((wait + 999) / 1000);
    }
    int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                       timeout);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_) {
        for (auto& [unused, c] : conns) close(c.fd);
        open_.store(0);
        return;
      }
      if (std::find(listeners_.begin(), listeners_.end(), fd) !=
          listeners_.end()) {
        for (;;) {
          int client =
              accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (client < 0) break;
          Conn& c = conns[client];
          c = Conn{};
          c.fd = client;
          c.id = next_id++;
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = client;
          epoll_ctl(epoll_, EPOLL_CTL_ADD, client, &ev);
          accepted_.fetch_add(1);
          AddAndTrackPeak(open_, peak_open_);
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = it->second;
      if (events[i].events & EPOLLOUT) {
        if (!flush(c)) continue;
      }
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        char buf[16 << 10];
        bool closed = false;
        for (;;) {
          ssize_t got = recv(fd, buf, sizeof(buf), 0);
          if (got > 0) {
            c.in.append(buf, static_cast<size_t>(got));
            continue;
          }
          if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          closed = true;  // the peer closed, or the socket failed
          break;
        }
        if (closed) {
          close_conn(c);
          continue;
        }
        serve(c);
      }
    }
    const int64_t now = NowMicros();
    while (!timers.empty() && std::get<0>(timers.top()) <= now) {
      auto [due, fd, id] = timers.top();
      timers.pop();
      auto it = conns.find(fd);
      if (it == conns.end() || it->second.id != id || it->second.due_us != due)
        continue;
      fire(it->second);
    }
  }
}

}  // namespace egress
