// stream_rss: how much memory egressd holds while it streams a large body to a
// slow reader. Starts a loopback upstream that generates the body, egressd as a
// child process, and a DoStream caller that sleeps between messages; samples
// egressd's resident memory and prints its baseline and peak.
//
//   bazel run -c opt //bench:stream_rss -- --bytes=1073741824 --delay=1ms
//
// Bounded: one stream of --bytes, and a --deadline for the whole call.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "proto/egress/v1/egress.grpc.pb.h"
#include "proto/egress/v1/request_forms.h"
#include "tests/fakes/child_process.h"
#include "tests/fakes/fake_upstream.h"

ABSL_FLAG(uint64_t, bytes, 1ull << 30, "Body size to stream.");
ABSL_FLAG(absl::Duration, delay, absl::Milliseconds(1),
          "Caller's pause after each message (the slow reader).");
ABSL_FLAG(absl::Duration, deadline, absl::Minutes(5), "Deadline of the call.");
ABSL_FLAG(std::string, egressd, "service/egressd",
          "Path of the egressd binary.");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  egress::FakeUpstream upstream;
  const int port = egress::UnusedLoopbackPort();
  const std::string listen = absl::StrCat("127.0.0.1:", port);

  const pid_t child =
      egress::SpawnChild({absl::GetFlag(FLAGS_egressd), "--listen=" + listen,
                          "--metrics_listen=", "--workers=4",
                          "--allow_cidrs=127.0.0.0/8", "--allow_ports=*"},
                         /*stderr_path=*/"");
  if (child < 0) {
    std::perror("spawn egressd");
    return 1;
  }
  auto channel =
      grpc::CreateChannel(listen, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 std::chrono::seconds(10))) {
    std::fprintf(stderr, "egressd did not start\n");
    kill(child, SIGKILL);
    return 1;
  }
  auto stub = egress::v1::EgressService::NewStub(channel);
  const long baseline = egress::ProcStatusKib(child, "VmRSS");

  std::atomic<bool> done{false};
  std::atomic<long> sampled_peak{0};
  std::thread sampler([&] {
    while (!done) {
      sampled_peak =
          std::max(sampled_peak.load(), egress::ProcStatusKib(child, "VmRSS"));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  egress::v1::DoRequest request;
  request.set_url(
      upstream.Url(absl::StrCat("/stream/", absl::GetFlag(FLAGS_bytes))));
  grpc::ClientContext context;
  context.set_deadline(
      std::chrono::system_clock::now() +
      absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_deadline)));
  const auto start = std::chrono::steady_clock::now();
  auto reader = stub->DoStream(&context, egress::v1::ForStream(request));
  egress::v1::DoStreamResponse chunk;
  uint64_t received = 0;
  bool intact = true;
  const auto delay = absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_delay));
  while (reader->Read(&chunk)) {
    const std::string& body = chunk.body();
    for (size_t i = 0; i < body.size() && intact; i += 4099) {
      intact = body[i] == egress::PatternByte(received + i);
    }
    received += body.size();
    std::this_thread::sleep_for(delay);
  }
  grpc::Status status = reader->Finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  done = true;
  sampler.join();
  const long hwm = egress::ProcStatusKib(child, "VmHWM");
  kill(child, SIGTERM);
  waitpid(child, nullptr, 0);

  std::printf(
      "streamed %llu bytes in %.1f s (%.1f MiB/s) to a reader pausing %s per "
      "message: %s, content %s\n",
      static_cast<unsigned long long>(received), seconds,
      received / seconds / (1 << 20),
      absl::FormatDuration(absl::GetFlag(FLAGS_delay)).c_str(),
      status.ok() ? "OK" : status.error_message().c_str(),
      intact ? "intact" : "CORRUPT");
  std::printf(
      "egressd RSS: %.1f MiB before the stream, peak %.1f MiB (VmHWM), "
      "peak sampled during the stream %.1f MiB\n",
      baseline / 1024.0, hwm / 1024.0, sampled_peak / 1024.0);
  return status.ok() && intact && received == absl::GetFlag(FLAGS_bytes) ? 0
                                                                         : 1;
}
