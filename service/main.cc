// egressd: the egress gRPC service. Settings come from flags (`egressd
// --help`), each with an embedded default. SIGTERM or SIGINT drains and exits
// 0.
#include <malloc.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "service/base/defaults.h"
#include "service/base/log.h"
#include "service/server/config.h"
#include "service/server/egress_server.h"
#include "service/server/policy_check.h"
#include "service/transport/dns_cache.h"

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "performs outbound HTTP requests for gRPC callers over pooled "
      "keep-alive connections.\nUsage: egressd [--flag=value ...]");
  // --help lists the service's flags (defined in service/server/config.cc), not
  // only those of this file.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view path) {
    return absl::StrContains(path, "service/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  // Debian builds Abseil without NDEBUG, so every absl::Mutex (gRPC's included)
  // would feed a global lock-order graph: about 2% of the CPU per call, for a
  // check the sanitizer builds make anyway.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Block the stop signals before any thread starts, so every thread inherits
  // the mask and only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE,
         SIG_IGN);  // a peer closing a socket is an error code, not death
  // Bodies of 128 KiB and more get pages of their own, given back to the
  // kernel when the call ends. glibc's default raises this threshold to the
  // largest block freed so far (up to 32 MiB), after which large bodies come
  // from per-thread arenas that keep their memory: resident memory then
  // follows the worst burst since start, not the memory budget. The
  // environment (MALLOC_MMAP_THRESHOLD_) still decides when set.
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) {
    mallopt(M_MMAP_THRESHOLD, 128 << 10);
  }

  absl::StatusOr<egress::Config> loaded = egress::ConfigFromFlags(argc, argv);
  if (!loaded.ok()) {
    egress::LogError(std::string(loaded.status().message()));
    return 2;
  }
  const egress::Config& config = *loaded;
  if (egress::PrintConfigRequested()) {
    absl::Status valid = config.Validate();
    std::fputs(egress::ConfigToText(config).c_str(), stdout);
    if (!valid.ok()) egress::LogError(std::string(valid.message()));
    return valid.ok() ? 0 : 2;
  }
  if (std::optional<egress::PolicyCheckRequest> check =
          egress::PolicyCheckRequested()) {
    egress::SystemResolver resolver;
    absl::StatusOr<egress::PolicyReport> report =
        egress::ExplainPolicy(config, check->caller, check->url, resolver);
    if (!report.ok()) {
      egress::LogError(std::string(report.status().message()));
      return 2;
    }
    std::fputs(report->text.c_str(), stdout);
    return report->allowed ? 0 : 1;
  }
  absl::StatusOr<std::unique_ptr<egress::EgressServer>> server =
      egress::EgressServer::Start(config);
  if (!server.ok()) {
    egress::LogError(std::string(server.status().message()));
    return 2;
  }
  // While serving, log lines (an access line per call) go out in batches;
  // everything pending is written when this ends, after the drain.
  egress::LogBatching log_batching(egress::defaults::kLogFlushInterval);
  // The config file and the flags again: what a reload applies.
  const auto load = [argc, argv] {
    return egress::ConfigFromFlags(argc, argv);
  };
  (*server)->WatchConfig(load);
  int received = 0;
  // SIGHUP reloads (the config file's origins and policy lists, the callers'
  // files); the others stop.
  while (sigwait(&stop_signals, &received) == 0 && received == SIGHUP) {
    (*server)->ReloadFrom(load, "SIGHUP").IgnoreError();
  }
  egress::LogInfo(received == SIGTERM ? "received SIGTERM" : "received SIGINT");
  (*server)->Shutdown(config.drain_timeout);
  return 0;
}
