#include "tests/fakes/child_process.h"

#include <fcntl.h>
#include <spawn.h>

#include <cerrno>

extern char** environ;

namespace egress {

pid_t SpawnChild(const std::vector<std::string>& argv,
                 const std::string& stderr_path, bool stdout_too) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!stderr_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  if (stdout_too) posix_spawn_file_actions_adddup2(&actions, 2, 1);
  pid_t pid = -1;
  const int error =
      posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    errno = error;
    return -1;
  }
  return pid;
}

}  // namespace egress
