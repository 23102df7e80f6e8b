#pragma once
// A child process running `/bin/sh -c CMD` in its own process group, with stdout/stderr as pipes
// and its exit observed through a pidfd (no SIGCHLD juggling, no races with pid reuse).

#include "common/async.hpp"

#include <csignal>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace dc::worker {

struct SpawnSpec {
  std::string shell_command;
  std::string cwd;
  std::vector<std::string> env; // "K=V"
  bool stdin_pipe = false;      // stdin from a pipe we write (in()); else /dev/null
};

struct ExitStatus {
  std::optional<int> code;   // normal exit
  std::optional<int> signal; // killed by this signal
};

class ChildProcess {
public:
  // Starts `/bin/sh -c` with posix_spawn. The child: new process group, signals reset, fds > 2
  // closed, stdin /dev/null or a pipe (spec.stdin_pipe), cwd. Throws std::system_error if pipes,
  // the spawn (a missing job dir included) or pidfd_open fail.
  ChildProcess(asio::any_io_executor ex, const SpawnSpec& spec);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return m_pid; }
  asio::readable_pipe& out() { return m_out; }
  asio::readable_pipe& err() { return m_err; }
  // The write end of the child's stdin (closed unless spec.stdin_pipe); close it for EOF.
  asio::writable_pipe& in() { return m_in; }

  // Waits for the shell to exit and reaps it. Throws std::system_error.
  awaitable<ExitStatus> wait();
  bool exited() const { return m_status.has_value(); }

  // Sends `sig` to the child's whole process group; harmless once it is gone.
  void signal_group(int sig) const;

private:
  pid_t m_pid = -1;
  asio::readable_pipe m_out;
  asio::readable_pipe m_err;
  asio::writable_pipe m_in;
  asio::posix::stream_descriptor m_pidfd;
  std::optional<ExitStatus> m_status;
};

// Makes this process a child subreaper, so orphaned grandchildren (e.g. after setsid) are
// re-parented to us and can still be found and killed. Returns false if the kernel refuses.
bool become_subreaper();

// Kills (SIGKILL) every process re-parented to us whose environment carries `marker`
// ("DISTCOMP_JOB_ID=…"). Returns how many it signalled. Best effort.
int kill_orphans_with_marker(const std::string& marker);
// Whether any process re-parented to us is left (running or not yet reaped) that is no live
// command of a session.
bool have_orphans();
// Reaps exited orphans (re-parented to us as subreaper); never touches a live ChildProcess's pid,
// whose exit belongs to its pidfd.
void reap_orphans();
// Whether a process re-parented to us that is no live command (one that escaped both its group
// and its marker) has its working directory or an open file at or beneath `dir`.
bool orphan_uses(const std::string& dir);

} // namespace dc::worker
