#include "worker/process.hpp"

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace dc::worker {
namespace {

std::system_error os_error(const char* what)
{
  return {errno, std::generic_category(), what};
}

std::set<pid_t>& live_children()
{
  static std::set<pid_t> pids; // one thread: no lock
  return pids;
}

// Runs in the child between fork and exec: only async-signal-safe calls.
[[noreturn]] void exec_child(const SpawnSpec& spec, char* const* argv, char* const* envp, int in_r,
                             int out_w, int err_w)
{
  setpgid(0, 0); // the parent does it too, so an early kill(-pgid) cannot miss it
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) {
    signal(sig, SIG_DFL); // the worker ignores SIGPIPE; exec would pass that on
  }
  const int in = in_r >= 0 ? in_r : open("/dev/null", O_RDONLY);
  if (in < 0 || dup2(in, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) {
    _exit(127);
  }
  // Asio opens sockets and pipes without O_CLOEXEC: nothing of the worker may leak into jobs.
  syscall(SYS_close_range, 3U, ~0U, 0U);
  if (chdir(spec.cwd.c_str()) != 0) {
    const char msg[] = "distcomp: cannot enter the job directory\n";
    [[maybe_unused]] auto n = write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  execve("/bin/sh", argv, envp);
  const char msg[] = "distcomp: cannot execute /bin/sh\n";
  [[maybe_unused]] auto n = write(2, msg, sizeof msg - 1);
  _exit(127);
}

} // namespace

ChildProcess::ChildProcess(asio::any_io_executor ex, const SpawnSpec& spec)
    : m_out(ex), m_err(ex), m_in(ex), m_pidfd(ex)
{
  int out_pipe[2];
  int err_pipe[2];
  int in_pipe[2] = {-1, -1};
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    throw os_error("pipe2");
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    const auto e = os_error("pipe2");
    close(out_pipe[0]);
    close(out_pipe[1]);
    throw e;
  }
  if (spec.stdin_pipe && pipe2(in_pipe, O_CLOEXEC) != 0) {
    const auto e = os_error("pipe2");
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) {
      close(fd);
    }
    throw e;
  }
  // Everything the child needs is built before fork: no allocation after it.
  std::vector<char*> argv = {const_cast<char*>("sh"), const_cast<char*>("-c"),
                             const_cast<char*>(spec.shell_command.c_str()), nullptr};
  std::vector<char*> envp;
  for (const auto& kv : spec.env) {
    envp.push_back(const_cast<char*>(kv.c_str()));
  }
  envp.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) {
    const auto e = os_error("fork");
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], in_pipe[0], in_pipe[1]}) {
      if (fd >= 0) {
        close(fd);
      }
    }
    throw e;
  }
  if (pid == 0) {
    exec_child(spec, argv.data(), envp.data(), in_pipe[0], out_pipe[1], err_pipe[1]);
  }
  m_pid = pid;
  live_children().insert(pid);
  setpgid(pid, pid); // may fail with EACCES once the child exec'd; the child did it already
  close(out_pipe[1]);
  close(err_pipe[1]);
  m_out.assign(out_pipe[0]);
  m_err.assign(err_pipe[0]);
  if (spec.stdin_pipe) {
    close(in_pipe[0]);
    m_in.assign(in_pipe[1]);
  }
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    const auto e = os_error("pidfd_open");
    kill(-pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    live_children().erase(pid);
    m_status = ExitStatus{};
    throw e;
  }
  m_pidfd.assign(pidfd);
}

ChildProcess::~ChildProcess()
{
  if (!m_status && m_pid > 0) {
    // Never leave a zombie or a running job behind, whatever path destroyed us.
    kill(-m_pid, SIGKILL);
    kill(m_pid, SIGKILL);
    siginfo_t info{};
    waitid(P_PIDFD, static_cast<id_t>(m_pidfd.native_handle()), &info, WEXITED);
  }
  live_children().erase(m_pid);
}

awaitable<ExitStatus> ChildProcess::wait()
{
  while (!m_status) {
    siginfo_t info{};
    const int rc =
        waitid(P_PIDFD, static_cast<id_t>(m_pidfd.native_handle()), &info, WEXITED | WNOHANG);
    if (rc == 0 && info.si_pid != 0) {
      ExitStatus status;
      if (info.si_code == CLD_EXITED) {
        status.code = info.si_status;
      } else {
        status.signal = info.si_status;
      }
      m_status = status;
      live_children().erase(m_pid);
      break;
    }
    if (rc != 0 && errno != EINTR) {
      throw os_error("waitid");
    }
    co_await m_pidfd.async_wait(asio::posix::stream_descriptor::wait_read, use_awaitable);
  }
  co_return *m_status;
}

void ChildProcess::signal_group(int sig) const
{
  if (m_pid > 0) {
    kill(-m_pid, sig); // ESRCH once the group is empty: nothing to do
  }
}

bool become_subreaper()
{
  return prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
}

namespace {

// pids whose parent is this process (children re-parented to us as subreaper included). The
// kernel lists them in /proc/self/task/<tid>/children (one small read; the worker has one
// thread that forks); without CONFIG_PROC_CHILDREN, fall back to scanning every /proc/<pid>/stat.
std::vector<pid_t> our_children()
{
  std::vector<pid_t> out;
  const pid_t self = getpid();
  std::ifstream list("/proc/self/task/" + std::to_string(self) + "/children");
  if (list) {
    long pid = 0;
    while (list >> pid) {
      out.push_back(static_cast<pid_t>(pid));
    }
    return out;
  }
  DIR* dir = opendir("/proc");
  if (dir == nullptr) {
    return out;
  }
  while (const dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0') {
      continue;
    }
    std::ifstream stat("/proc/" + std::string(entry->d_name) + "/stat");
    std::string line;
    std::getline(stat, line);
    // Field 4 (ppid) follows the command name in parentheses, which may contain spaces.
    const auto close_paren = line.rfind(')');
    if (close_paren == std::string::npos) {
      continue;
    }
    char state = 0;
    long ppid = 0;
    if (std::sscanf(line.c_str() + close_paren + 1, " %c %ld", &state, &ppid) == 2 &&
        ppid == self) {
      out.push_back(static_cast<pid_t>(pid));
    }
  }
  closedir(dir);
  return out;
}

bool environ_has(pid_t pid, const std::string& marker)
{
  std::ifstream env("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::string item;
  while (std::getline(env, item, '\0')) {
    if (item == marker) {
      return true;
    }
  }
  return false;
}

} // namespace

int kill_orphans_with_marker(const std::string& marker)
{
  int signalled = 0;
  for (pid_t pid : our_children()) {
    if (live_children().count(pid) == 0 && environ_has(pid, marker)) {
      signalled += kill(pid, SIGKILL) == 0 ? 1 : 0;
    }
  }
  return signalled;
}

void reap_orphans()
{
  for (pid_t pid : our_children()) {
    if (live_children().count(pid) == 0) {
      waitpid(pid, nullptr, WNOHANG);
    }
  }
}

} // namespace dc::worker
