// Reloading the config file while serving: ConfigWatcher notices a change of
// the files it reads (the config file and the callers' files; polled: a
// stat(2) each every interval, which also sees the symlink swap of a
// Kubernetes ConfigMap or Secret volume), and RestartOnlyChanges names the
// settings of a new Config that a reload cannot apply (settings.h's
// kAtStart). EgressServer::Reload applies the rest.
//
// Thread safety: ConfigWatcher runs `on_change` on its own thread; its
// destructor stops the thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "service/server/config.h"

namespace egress {

// The settings whose value differs between `running` and `next` and that
// only a restart applies, by name ("workers", "listen").
std::vector<std::string> RestartOnlyChanges(const Config& running,
                                            const Config& next);

class ConfigWatcher {
 public:
  // Calls `on_change` (on the watcher's thread) each time one of `paths`
  // changes (once for changes seen together): its inode, size or
  // modification time differ from the last look.
  ConfigWatcher(std::vector<std::string> paths,
                std::chrono::nanoseconds interval,
                std::function<void()> on_change);
  ~ConfigWatcher();
  ConfigWatcher(const ConfigWatcher&) = delete;
  ConfigWatcher& operator=(const ConfigWatcher&) = delete;

 private:
  void Run();

  const std::vector<std::string> paths_;
  const std::chrono::nanoseconds interval_;
  const std::function<void()> on_change_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace egress
