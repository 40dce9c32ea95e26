// Starts a program as a child process of a multithreaded test.
#ifndef EGRESS_TESTS_FAKES_CHILD_PROCESS_H_
#define EGRESS_TESTS_FAKES_CHILD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace egress {

// Runs argv[0] with `argv`, its stderr written to `stderr_path` (inherited when
// empty; stdout goes there too when `stdout_too`), and returns its pid, or -1
// with errno set. Uses posix_spawn: between fork and exec a child of a
// multithreaded process may only make async-signal-safe calls, and a malloc
// there can deadlock on a lock another thread held at the fork.
pid_t SpawnChild(const std::vector<std::string>& argv,
                 const std::string& stderr_path, bool stdout_too = false);

// A loopback TCP port that nothing listened on a moment ago, for a server
// program that cannot be told to pick its own.
int FreeLoopbackPort();

// A TCP socket listening on 127.0.0.1 on an ephemeral port, for a test's own
// raw server; its port in `port`. The caller closes it. -1 on failure.
int ListenOnLoopback(int& port);

// Waits until 127.0.0.1:`port` accepts connections; false after `limit`.
bool WaitForLoopbackPort(int port, std::chrono::milliseconds limit);

// A field of /proc/PID/status in KiB ("VmRSS", "VmHWM"), or -1.
long ProcStatusKib(pid_t pid, const std::string& field);

// Stops a child with SIGTERM and reaps it.
void StopChild(pid_t pid);

}  // namespace egress

#endif  // EGRESS_TESTS_FAKES_CHILD_PROCESS_H_
