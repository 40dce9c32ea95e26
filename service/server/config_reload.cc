#include "service/server/config_reload.h"

#include <sys/stat.h>

#include <utility>

namespace egress {
namespace {

// What is compared to see a change: a new file (rename or symlink swap),
// another size, another modification time.
struct FileMark {
  bool exists = false;
  ino_t inode = 0;
  off_t size = 0;
  timespec modified{};

  static FileMark Of(const std::string& path) {
    struct stat st {};
    FileMark mark;
    if (stat(path.c_str(), &st) != 0) return mark;
    mark.exists = true;
    mark.inode = st.st_ino;
    mark.size = st.st_size;
    mark.modified = st.st_mtim;
    return mark;
  }
  bool operator!=(const FileMark& o) const {
    return exists != o.exists || inode != o.inode || size != o.size ||
           modified.tv_sec != o.modified.tv_sec ||
           modified.tv_nsec != o.modified.tv_nsec;
  }
};

}  // namespace

std::vector<std::string> RestartOnlyChanges(const Config& running,
                                            const Config& next) {
  std::vector<std::string> changed;
#define EGRESS_COMPARE(name, member, Type, Flag, def, min, max, when, help) \
  if (when != SettingWhen::kLive && !(running.member == next.member)) {     \
    changed.push_back(#name);                                               \
  }
  EGRESS_SETTINGS(EGRESS_COMPARE)
#undef EGRESS_COMPARE
  return changed;
}

ConfigWatcher::ConfigWatcher(std::vector<std::string> paths,
                             std::chrono::nanoseconds interval,
                             std::function<void()> on_change)
    : paths_(std::move(paths)),
      interval_(interval),
      on_change_(std::move(on_change)),
      thread_([this] { Run(); }) {}

ConfigWatcher::~ConfigWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ConfigWatcher::Run() {
  std::vector<FileMark> seen;
  for (const std::string& path : paths_) seen.push_back(FileMark::Of(path));
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
    bool changed = false;
    for (size_t i = 0; i < paths_.size(); ++i) {
      const FileMark now = FileMark::Of(paths_[i]);
      // A file being replaced may be missing for a moment: wait for it.
      if (!now.exists || !(now != seen[i])) continue;
      seen[i] = now;
      changed = true;
    }
    if (!changed) continue;
    lock.unlock();
    on_change_();
    lock.lock();
  }
}

}  // namespace egress
