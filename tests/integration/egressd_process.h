// EgressdProcess: egressd from a test's runfiles (data = ["//service:egressd"])
// as a child process on an ephemeral loopback port, with loopback upstreams on
// any port allowed; killed when destroyed unless it was waited for.
//
//   EgressdProcess egressd({"--workers=64"});
//   ASSERT_GT(egressd.port(), 0) << egressd.Log();
//
// Thread safety: one test thread uses it.
#pragma once

#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/fakes/child_process.h"

namespace egress {

// egressd from the test's runfiles, as a child process.
class EgressdProcess {
 public:
  // `wrapper`: a command egressd runs under, such as
  // {"/usr/bin/prlimit", "--nofile=64:64", "--"}.
  explicit EgressdProcess(std::vector<std::string> flags,
                          std::vector<std::string> wrapper = {}) {
    log_ = absl::StrCat(::testing::TempDir(), "/egressd-", getpid(), ".log");
    std::vector<std::string> args = {
        "service/egressd", "--listen=127.0.0.1:0",
        "--metrics_listen=", "--allow_cidrs=127.0.0.0/8", "--allow_ports=*"};
    args.insert(args.end(), flags.begin(), flags.end());
    args.insert(args.begin(), wrapper.begin(), wrapper.end());
    pid_ = SpawnChild(args, log_);
    // Bounded wait for the "serving gRPC on port N" line.
    const std::regex serving("serving gRPC on port (\\d+)");
    const std::regex metrics("metrics on port (\\d+)");
    for (int i = 0; i < 300 && port_ == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      std::ifstream in(log_);
      std::string text((std::istreambuf_iterator<char>(in)), {});
      std::smatch m;
      if (std::regex_search(text, m, serving)) port_ = std::stoi(m[1]);
      if (std::regex_search(text, m, metrics)) metrics_port_ = std::stoi(m[1]);
    }
  }
  ~EgressdProcess() {
    if (pid_ > 0 && !waited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }
  // 0 unless started with "--metrics_listen=127.0.0.1:0".
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  // A field of its /proc/PID/status in KiB ("VmRSS", "VmHWM"), or -1.
  long StatusKib(const std::string& field) const {
    return ProcStatusKib(pid_, field);
  }
  void Signal(int sig) { kill(pid_, sig); }
  // Exit code, or -1 if it did not exit within `limit`.
  int Wait(std::chrono::seconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        waited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  std::string Log() const {
    std::ifstream in(log_);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  // Its /metrics text ("" without --metrics_listen=127.0.0.1:0).
  std::string Metrics() const {
    if (metrics_port_ == 0) return "";
    httplib::Client client("127.0.0.1", metrics_port_);
    auto r = client.Get("/metrics");
    return r ? r->body : "";
  }
  // The value of one series (`name{labels}` as written) in /metrics text,
  // -1 when absent.
  static double Series(const std::string& text, const std::string& series) {
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (absl::StartsWith(line, series + " ")) {
        return std::stod(std::string(line.substr(series.size() + 1)));
      }
    }
    return -1;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  bool waited_ = false;
};

}  // namespace egress
