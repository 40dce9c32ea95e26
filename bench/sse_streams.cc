// sse_streams: thousands of concurrent server-sent-event streams through one
// server, egressd (DoStream) or an HTTP proxy (nginx with proxy_buffering
// off), from a one-thread loopback upstream in this process that sends each
// stream an event of --event_bytes every --every for --seconds. Measures
// what a caller sees, the delay of every event from the upstream's send to
// the caller's receipt, and what the server costs (--pid): its peak resident
// memory and its CPU time per event. Prints one JSON object.
//
//   sse_streams --via=egressd --target=127.0.0.1:50051 --pid=PID
//       --upstream_port=PORT --streams=5000 --seconds=30   (one line)
//   sse_streams --via=proxy --target=127.0.0.1:8080 --pid=NGINX_WORKER ...
//
// The proxy must forward to http://127.0.0.1:PORT (the upstream listens on
// --upstream_port). Stream starts are spread over --ramp so that the events
// spread over each interval, as independent callers' would. Bounded: every
// stream ends after its events or at --seconds + --ramp + 15 s, whichever
// comes first.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "proto/egress/v1/egress.grpc.pb.h"
#include "service/telemetry/proc_stat.h"
#include "tests/fakes/child_process.h"
#include "tests/fakes/paced_upstream.h"

ABSL_FLAG(std::string, via, "egressd", "egressd (DoStream) or proxy (HTTP).");
ABSL_FLAG(std::string, target, "", "host:port of egressd or of the proxy.");
ABSL_FLAG(int, pid, 0, "The server process to measure (0: none).");
ABSL_FLAG(int, upstream_port, 0, "Port of the upstream (0: any).");
ABSL_FLAG(int, streams, 5000, "Concurrent streams.");
ABSL_FLAG(int, seconds, 30, "Events per stream, one per --every.");
ABSL_FLAG(int, streams_per_channel, 1000,
          "DoStream calls per gRPC channel (one HTTP/2 connection each): "
          "egressd allows --max_concurrent_streams (1024) on a connection.");
ABSL_FLAG(absl::Duration, every, absl::Seconds(1), "Interval of events.");
ABSL_FLAG(int, event_bytes, 200, "Bytes of one event.");
ABSL_FLAG(absl::Duration, ramp, absl::Seconds(2),
          "Stream starts are spread over this.");
ABSL_FLAG(absl::Duration, on_time, absl::Milliseconds(100),
          "An event later than this is late.");

namespace {

using egress::PacedUpstream;

// Collects events from a stream's bytes: "data: <sent_us> ...\n\n" each.
class EventParser {
 public:
  // Appends the delay (µs) of every complete event in `bytes` to `delays`.
  void Feed(absl::string_view bytes, std::vector<int32_t>& delays) {
    buffer_.append(bytes.data(), bytes.size());
    size_t at = 0;
    for (;;) {
      size_t start = buffer_.find("data: ", at);
      if (start == std::string::npos) break;
      size_t end = buffer_.find("\n\n", start);
      if (end == std::string::npos) {
        at = start;
        break;
      }
      const int64_t sent = PacedUpstream::SentMicros(
          absl::string_view(buffer_).substr(start, end - start));
      if (sent >= 0) {
        delays.push_back(static_cast<int32_t>(
            std::min<int64_t>(PacedUpstream::NowMicros() - sent, INT32_MAX)));
      }
      at = end + 2;
    }
    buffer_.erase(0, at);
  }

 private:
  std::string buffer_;
};

// Totals shared by every stream.
struct Tally {
  std::mutex mu;
  std::vector<int32_t> delays;  // guarded by mu
  int ended_ok = 0;             // guarded by mu
  std::vector<std::string> errors;
  std::atomic<int> done{0};
};

// One DoStream call, read with the callback API (no thread per stream).
class GrpcStream
    : public grpc::ClientReadReactor<egress::v1::DoStreamResponse> {
 public:
  GrpcStream(egress::v1::EgressService::Stub& stub, const std::string& url,
             std::chrono::system_clock::time_point deadline, Tally& tally)
      : tally_(tally) {
    context_.set_deadline(deadline);
    request_.set_method("GET");
    request_.set_url(url);
    stub.async()->DoStream(&context_, &request_, this);
    StartRead(&chunk_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (chunk_.has_body()) {
      std::vector<int32_t> delays;
      parser_.Feed(chunk_.body(), delays);
      if (!delays.empty()) {
        std::lock_guard<std::mutex> lock(tally_.mu);
        tally_.delays.insert(tally_.delays.end(), delays.begin(), delays.end());
      }
    }
    StartRead(&chunk_);
  }
  void OnDone(const grpc::Status& status) override {
    {
      std::lock_guard<std::mutex> lock(tally_.mu);
      if (status.ok()) {
        ++tally_.ended_ok;
      } else if (tally_.errors.size() < 5) {
        tally_.errors.push_back(
            absl::StrCat(status.error_code(), ": ", status.error_message()));
      }
    }
    tally_.done.fetch_add(1);
  }
  void Cancel() { context_.TryCancel(); }

 private:
  Tally& tally_;
  grpc::ClientContext context_;
  egress::v1::DoStreamRequest request_;
  egress::v1::DoStreamResponse chunk_;
  EventParser parser_;
};

// Streams over plain HTTP/1.0 to a proxy, all on this thread (epoll): the
// body is the raw event stream, delimited by the proxy closing.
void RunProxyStreams(const std::string& target, const std::string& path,
                     int streams, absl::Duration ramp,
                     std::chrono::steady_clock::time_point until,
                     Tally& tally) {
  std::vector<absl::string_view> hp = absl::StrSplit(target, ':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, std::string(hp[0]).c_str(), &addr.sin_addr);
  int port = 0;
  (void)absl::SimpleAtoi(hp[1], &port);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", target, "\r\n\r\n");
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  struct Conn {
    int fd = -1;
    bool head_done = false;
    std::string head;
    EventParser parser;
  };
  std::vector<Conn> conns(static_cast<size_t>(streams));
  const auto start = std::chrono::steady_clock::now();
  const auto gap = absl::ToChronoNanoseconds(ramp) / std::max(streams, 1);
  int opened = 0, open = 0;
  std::vector<epoll_event> events(1024);
  while (std::chrono::steady_clock::now() < until &&
         (opened < streams || open > 0)) {
    // Opens the streams whose start time has come.
    while (opened < streams &&
           std::chrono::steady_clock::now() >= start + gap * opened) {
      Conn& c = conns[static_cast<size_t>(opened)];
      c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
              0 ||
          send(c.fd, request.data(), request.size(), MSG_NOSIGNAL) !=
              static_cast<ssize_t>(request.size())) {
        std::lock_guard<std::mutex> lock(tally.mu);
        if (tally.errors.size() < 5)
          tally.errors.push_back(absl::StrCat("connect: ", strerror(errno)));
        close(c.fd);
        c.fd = -1;
        tally.done.fetch_add(1);
      } else {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = static_cast<uint64_t>(opened);
        epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
        ++open;
      }
      ++opened;
    }
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()),
                             opened < streams ? 1 : 100);
    std::vector<int32_t> delays;
    for (int i = 0; i < n; ++i) {
      Conn& c = conns[events[i].data.u64];
      char buf[16 << 10];
      const ssize_t got = recv(c.fd, buf, sizeof(buf), 0);
      if (got > 0) {
        absl::string_view data(buf, static_cast<size_t>(got));
        if (!c.head_done) {
          c.head.append(data.data(), data.size());
          const size_t end = c.head.find("\r\n\r\n");
          if (end == std::string::npos) continue;
          c.head_done = true;
          data = absl::string_view(c.head).substr(end + 4);
          c.parser.Feed(data, delays);
          continue;
        }
        c.parser.Feed(data, delays);
        continue;
      }
      if (got < 0 && errno == EAGAIN) continue;
      epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
      close(c.fd);
      c.fd = -1;
      --open;
      {
        std::lock_guard<std::mutex> lock(tally.mu);
        if (got == 0 && absl::StartsWith(c.head, "HTTP/1.1 200")) {
          ++tally.ended_ok;
        } else if (tally.errors.size() < 5) {
          tally.errors.push_back(
              absl::StrCat("stream ended: ", c.head.substr(0, 40)));
        }
      }
      tally.done.fetch_add(1);
    }
    if (!delays.empty()) {
      std::lock_guard<std::mutex> lock(tally.mu);
      tally.delays.insert(tally.delays.end(), delays.begin(), delays.end());
    }
  }
  for (Conn& c : conns) {
    if (c.fd >= 0) close(c.fd);
  }
  close(ep);
}

// What /proc says about a process.
struct ProcessSample {
  long rss_kib = -1;
  long hwm_kib = -1;
  double cpu_seconds = -1;
};

ProcessSample Sample(int pid) {
  ProcessSample s;
  if (pid <= 0) return s;
  s.rss_kib = egress::ProcStatusKib(pid, "VmRSS");
  s.hwm_kib = egress::ProcStatusKib(pid, "VmHWM");
  s.cpu_seconds = egress::ProcCpuSeconds(std::to_string(pid));
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string via = absl::GetFlag(FLAGS_via);
  const std::string target = absl::GetFlag(FLAGS_target);
  const int streams = absl::GetFlag(FLAGS_streams);
  const int events = absl::GetFlag(FLAGS_seconds);
  const int pid = absl::GetFlag(FLAGS_pid);
  if ((via != "egressd" && via != "proxy") || target.empty() || streams <= 0 ||
      events <= 0) {
    std::fprintf(stderr,
                 "sse_streams: --via=egressd|proxy, --target, --streams > 0 "
                 "and --seconds > 0 are required\n");
    return 2;
  }
  // Two sockets a stream in this process (the caller's and the upstream's).
  rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  const int every_ms =
      static_cast<int>(absl::ToInt64Milliseconds(absl::GetFlag(FLAGS_every)));
  const absl::Duration ramp = absl::GetFlag(FLAGS_ramp);
  PacedUpstream upstream(1, absl::GetFlag(FLAGS_upstream_port));
  const std::string path = absl::StrCat("/events/", events, "/", every_ms, "/",
                                        absl::GetFlag(FLAGS_event_bytes));
  const absl::Duration bound =
      ramp + absl::Milliseconds(int64_t{every_ms} * events) + absl::Seconds(15);
  const auto until =
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(bound);

  Tally tally;
  tally.delays.reserve(static_cast<size_t>(streams) * events);
  const ProcessSample before = Sample(pid);
  long peak_rss = before.rss_kib;
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling.load()) {
      peak_rss = std::max(peak_rss, Sample(pid).rss_kib);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  const auto start = std::chrono::steady_clock::now();
  if (via == "egressd") {
    // As many connections as a client needs under egressd's limit of
    // concurrent streams on one connection.
    const int per_channel =
        std::max(1, absl::GetFlag(FLAGS_streams_per_channel));
    std::vector<std::unique_ptr<egress::v1::EgressService::Stub>> stubs;
    for (int i = 0; i * per_channel < streams; ++i) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(-1);
      args.SetInt("sse_streams.channel", i);  // distinct connections
      stubs.push_back(
          egress::v1::EgressService::NewStub(grpc::CreateCustomChannel(
              target, grpc::InsecureChannelCredentials(), args)));
    }
    const std::string url = upstream.Url(0, path);
    const auto gap = absl::ToChronoNanoseconds(ramp) / streams;
    const auto deadline =
        std::chrono::system_clock::now() + absl::ToChronoNanoseconds(bound);
    std::vector<std::unique_ptr<GrpcStream>> calls;
    calls.reserve(static_cast<size_t>(streams));
    for (int i = 0; i < streams; ++i) {
      std::this_thread::sleep_until(start + gap * i);
      calls.push_back(std::make_unique<GrpcStream>(*stubs[i / per_channel], url,
                                                   deadline, tally));
    }
    while (tally.done.load() < streams &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (auto& call : calls) call->Cancel();
    while (tally.done.load() < streams) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  } else {
    RunProxyStreams(target, path, streams, ramp, until, tally);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  const ProcessSample after = Sample(pid);
  sampling.store(false);
  sampler.join();

  std::lock_guard<std::mutex> lock(tally.mu);
  std::vector<int32_t>& d = tally.delays;
  std::sort(d.begin(), d.end());
  const int64_t expected = int64_t{streams} * events;
  const int32_t on_time_us = static_cast<int32_t>(
      absl::ToInt64Microseconds(absl::GetFlag(FLAGS_on_time)));
  const int64_t on_time =
      std::upper_bound(d.begin(), d.end(), on_time_us) - d.begin();
  auto pct = [&](double q) {
    if (d.empty()) return -1.0;
    return d[std::min(d.size() - 1, static_cast<size_t>(q * d.size()))] / 1e3;
  };
  const double cpu = after.cpu_seconds - before.cpu_seconds;
  std::string errors;
  for (const std::string& e : tally.errors) {
    absl::StrAppend(&errors, errors.empty() ? "" : "; ", e);
  }
  for (char& c : errors) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  std::printf(
      "{\"via\": \"%s\", \"streams\": %d, \"streams_ok\": %d, "
      "\"events_expected\": %lld, \"events\": %zu, \"on_time\": %.5f, "
      "\"delay_ms\": {\"p50\": %.2f, \"p99\": %.2f, \"p999\": %.2f, \"max\": "
      "%.2f}, \"peak_rss_kib\": %ld, \"hwm_kib\": %ld, \"cpu_seconds\": "
      "%.3f, \"cpu_per_event_us\": %.2f, \"upstream_peak_open\": %lld, "
      "\"seconds\": %.2f, \"errors\": \"%s\"}\n",
      via.c_str(), streams, tally.ended_ok, static_cast<long long>(expected),
      d.size(), expected > 0 ? static_cast<double>(on_time) / expected : 0.0,
      pct(0.5), pct(0.99), pct(0.999), d.empty() ? -1.0 : d.back() / 1e3,
      std::max(peak_rss, after.rss_kib), after.hwm_kib, cpu,
      d.empty() ? -1.0 : cpu * 1e6 / static_cast<double>(d.size()),
      static_cast<long long>(upstream.peak_open()), seconds, errors.c_str());
  return 0;
}
