#include "tests/fakes/fake_upstream.h"

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"

namespace egress {

FakeUpstream::FakeUpstream(int threads)
    : server_(std::make_unique<httplib::Server>()) {
  Serve(threads);
}

FakeUpstream::FakeUpstream(const std::string& cert_file,
                           const std::string& key_file)
    : server_(std::make_unique<httplib::SSLServer>(cert_file.c_str(),
                                                   key_file.c_str())),
      tls_(true) {
  Serve(160);
}

void FakeUpstream::Serve(int threads) {
  httplib::Server& s = *server_;
  // Many idle keep-alive connections at once must not starve new ones.
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_keep_alive_max_count(1000000);
  s.set_keep_alive_timeout(60);

  auto counted = [this](auto handler) {
    return
        [this, handler](const httplib::Request& req, httplib::Response& res) {
          Count(req.remote_addr, req.remote_port);
          handler(req, res);
        };
  };
  auto echo = counted([](const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Method", req.method);
    res.set_header("X-Target", req.target);
    res.set_content(req.body, "application/octet-stream");
  });
  const char* kEcho = "/echo";
  s.Get(kEcho, echo)
      .Post(kEcho, echo)
      .Put(kEcho, echo)
      .Delete(kEcho, echo)
      .Patch(kEcho, echo)
      .Options(kEcho, echo);
  s.Get("/headers",
        counted([](const httplib::Request& req, httplib::Response& res) {
          std::string body;
          for (const auto& [name, value] : req.headers) {
            absl::StrAppend(&body, name, ": ", value, "\n");
          }
          res.set_content(body, "text/plain");
        }));
  s.Get(R"(/status/(\d+))",
        counted([](const httplib::Request& req, httplib::Response& res) {
          res.status = std::atoi(req.matches[1].str().c_str());
          res.set_content(absl::StrCat("status ", res.status), "text/plain");
        }));
  s.Get("/repeat", counted([](const httplib::Request&, httplib::Response& res) {
          // httplib 0.18.7 keeps headers in an unordered_multimap, which
          // writes equal names last-inserted first: inserting c, b, a puts
          // a=1, b=2, c=3 on the wire (the order the tests expect back).
          res.headers.emplace("Set-Cookie", "c=3");
          res.headers.emplace("Set-Cookie", "b=2");
          res.headers.emplace("Set-Cookie", "a=1");
          res.set_content("ok", "text/plain");
        }));
  s.Get(R"(/bytes/(\d+))",
        counted([](const httplib::Request& req, httplib::Response& res) {
          size_t n = std::strtoull(req.matches[1].str().c_str(), nullptr, 10);
          std::string body(n, '\0');
          for (size_t i = 0; i < n; ++i) body[i] = static_cast<char>(i % 256);
          res.set_content(body, "application/octet-stream");
        }));
  auto slow = counted([](const httplib::Request& req, httplib::Response& res) {
    int ms = std::atoi(req.matches[1].str().c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    if (req.method == "POST") {
      res.set_content(req.body, "application/octet-stream");
    } else {
      res.set_content("slow", "text/plain");
    }
  });
  s.Get(R"(/slow/(\d+))", slow).Post(R"(/slow/(\d+))", slow);
  // /busy/<key>/<n>/<s>: the first n requests for <key> are answered 429
  // with "Retry-After: <s>" (503 for POST), the next 200 "ok after n".
  auto busy =
      counted([this](const httplib::Request& req, httplib::Response& res) {
        const int n = std::atoi(req.matches[2].str().c_str());
        int seen;
        {
          std::lock_guard<std::mutex> lock(mu_);
          seen = busy_[req.matches[1].str()]++;
        }
        if (seen < n) {
          res.status = req.method == "POST" ? 503 : 429;
          res.set_header("Retry-After", req.matches[3].str());
          res.set_content("busy", "text/plain");
          return;
        }
        res.set_content("ok after " + std::to_string(seen), "text/plain");
      });
  s.Get(R"(/busy/(\w+)/(\d+)/(\d+))", busy)
      .Post(R"(/busy/(\w+)/(\d+)/(\d+))", busy);
  s.Post("/gate",
         counted([this](const httplib::Request& req, httplib::Response& res) {
           std::unique_lock<std::mutex> lock(mu_);
           ++gate_waiting_;
           gate_cv_.wait_for(lock, std::chrono::seconds(60),
                             [this] { return gate_open_; });
           --gate_waiting_;
           res.set_content(std::to_string(req.body.size()), "text/plain");
         }));
  s.Get("/close", counted([](const httplib::Request&, httplib::Response& res) {
          res.set_header("Connection", "close");
          res.set_content("bye", "text/plain");
        }));

  // Generated bodies: written piece by piece as the client takes them.
  auto releaser = [this](bool success) {
    if (!success) ++aborted_streams_;
  };
  auto fill = [](size_t offset, size_t length) {
    std::string piece(length, '\0');
    for (size_t i = 0; i < length; ++i) piece[i] = PatternByte(offset + i);
    return piece;
  };
  s.Get(R"(/stream/(\d+))",
        counted([=](const httplib::Request& req, httplib::Response& res) {
          const size_t n =
              std::strtoull(req.matches[1].str().c_str(), nullptr, 10);
          res.set_content_provider(
              n, "application/octet-stream",
              [fill](size_t offset, size_t length, httplib::DataSink& sink) {
                const std::string piece =
                    fill(offset, std::min<size_t>(length, 64 << 10));
                return sink.write(piece.data(), piece.size());
              },
              releaser);
        }));
  s.Get(R"(/chunked/(\d+))",
        counted([=](const httplib::Request& req, httplib::Response& res) {
          const size_t n =
              std::strtoull(req.matches[1].str().c_str(), nullptr, 10);
          res.set_chunked_content_provider(
              "application/octet-stream",
              [fill, n](size_t offset, httplib::DataSink& sink) {
                if (offset >= n) {
                  sink.done();
                  return true;
                }
                const std::string piece =
                    fill(offset, std::min<size_t>(n - offset, 64 << 10));
                return sink.write(piece.data(), piece.size());
              },
              releaser);
        }));
  // Event streams: before writing event i, `wait_before(i)`; then the send
  // time is kept and "data: i\n\n" written.
  auto events_provider = [=](int events, std::function<void(int)> wait_before) {
    auto next = std::make_shared<int>(0);
    return [this, events, wait_before, next](size_t, httplib::DataSink& sink) {
      if (*next >= events) {
        sink.done();
        return true;
      }
      wait_before(*next);
      {
        std::lock_guard<std::mutex> lock(mu_);
        sse_sent_.push_back(std::chrono::steady_clock::now());
      }
      const std::string event = absl::StrCat("data: ", *next, "\n\n");
      ++*next;
      return sink.write(event.data(), event.size());
    };
  };
  s.Get(R"(/sse/(\d+)/(\d+))",
        counted([=](const httplib::Request& req, httplib::Response& res) {
          const int events = std::atoi(req.matches[1].str().c_str());
          const int gap_ms = std::atoi(req.matches[2].str().c_str());
          res.set_chunked_content_provider(
              "text/event-stream",
              events_provider(events,
                              [gap_ms](int i) {
                                if (i > 0) {
                                  std::this_thread::sleep_for(
                                      std::chrono::milliseconds(gap_ms));
                                }
                              }),
              releaser);
        }));
  s.Get(R"(/sse-lockstep/(\d+))",
        counted([=](const httplib::Request& req, httplib::Response& res) {
          const int events = std::atoi(req.matches[1].str().c_str());
          {
            std::lock_guard<std::mutex> lock(mu_);
            sse_acked_ = 0;
          }
          res.set_chunked_content_provider(
              "text/event-stream",
              events_provider(events,
                              [this](int i) {
                                std::unique_lock<std::mutex> lock(mu_);
                                if (!sse_ack_cv_.wait_for(
                                        lock, std::chrono::seconds(10),
                                        [&] { return sse_acked_ >= i; })) {
                                  ++sse_ack_timeouts_;
                                }
                              }),
              releaser);
        }));

  port_ = s.bind_to_any_port("127.0.0.1");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

FakeUpstream::~FakeUpstream() {
  OpenGate();  // no request waits out its 60 s at a stopping server
  server_->stop();
  thread_.join();
}

std::string FakeUpstream::Url(absl::string_view path,
                              absl::string_view host) const {
  return absl::StrCat(tls_ ? "https://" : "http://", host, ":", port_, path);
}

std::vector<std::chrono::steady_clock::time_point> FakeUpstream::sse_sent()
    const {
  std::lock_guard<std::mutex> lock(mu_);
  return sse_sent_;
}

void FakeUpstream::AckSseEvent(int n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    sse_acked_ = n;
  }
  sse_ack_cv_.notify_all();
}

void FakeUpstream::CloseGate() {
  std::lock_guard<std::mutex> lock(mu_);
  gate_open_ = false;
}

void FakeUpstream::OpenGate() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    gate_open_ = true;
  }
  gate_cv_.notify_all();
}

int FakeUpstream::gate_waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return gate_waiting_;
}

int FakeUpstream::connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(peers_.size());
}

void FakeUpstream::Count(const std::string& addr, int port) {
  ++requests_;
  std::lock_guard<std::mutex> lock(mu_);
  peers_.emplace(addr, port);
}

int UnusedLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace egress
