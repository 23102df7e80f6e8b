#include "worker/process.hpp"

#include <cerrno>
#include <climits>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <spawn.h>
#include <string_view>
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

// posix_spawn (vfork + exec in glibc): no copy of the worker's page tables and no copy-on-write
// faults afterwards, which fork() cost on every command. The child: its own process group,
// every signal at its default (the worker ignores SIGPIPE; exec would pass that on) and none
// blocked, stdin/stdout/stderr as given, every other fd closed (Asio opens sockets and pipes
// without O_CLOEXEC: nothing of the worker may leak into jobs), the job dir as cwd.
pid_t spawn_shell(const SpawnSpec& spec, char* const* argv, char* const* envp, int in_r, int out_w,
                  int err_w)
{
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  if (int rc = posix_spawnattr_init(&attr); rc != 0) {
    throw std::system_error(rc, std::generic_category(), "posix_spawnattr_init");
  }
  if (int rc = posix_spawn_file_actions_init(&actions); rc != 0) {
    posix_spawnattr_destroy(&attr);
    throw std::system_error(rc, std::generic_category(), "posix_spawn_file_actions_init");
  }
  sigset_t none;
  sigemptyset(&none);
  // Every signal back to its default, glibc's internal SIGCANCEL and SIGSETXID (32, 33) included:
  // sigfillset() leaves those two out, and glibc 2.36's posix_spawn then sets them to SIG_IGN in
  // the child, which exec keeps. (sigfillset is this memset minus those two bits.)
  sigset_t all;
  std::memset(&all, 0xff, sizeof all);
  int rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                               POSIX_SPAWN_SETSIGDEF);
  rc = rc ? rc : posix_spawnattr_setpgroup(&attr, 0);
  rc = rc ? rc : posix_spawnattr_setsigmask(&attr, &none);
  rc = rc ? rc : posix_spawnattr_setsigdefault(&attr, &all);
  rc = rc          ? rc
       : in_r >= 0 ? posix_spawn_file_actions_adddup2(&actions, in_r, 0)
                   : posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  rc = rc ? rc : posix_spawn_file_actions_adddup2(&actions, out_w, 1);
  rc = rc ? rc : posix_spawn_file_actions_adddup2(&actions, err_w, 2);
  rc = rc ? rc : posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  rc = rc ? rc : posix_spawn_file_actions_addchdir_np(&actions, spec.cwd.c_str());
  pid_t pid = -1;
  const char* what = "posix_spawn setup";
  if (rc == 0) {
    what = "cannot start /bin/sh in the job directory";
    rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, envp);
  }
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    throw std::system_error(rc, std::generic_category(), what);
  }
  return pid;
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
  std::vector<char*> argv = {const_cast<char*>("sh"), const_cast<char*>("-c"),
                             const_cast<char*>(spec.shell_command.c_str()), nullptr};
  std::vector<char*> envp;
  for (const auto& kv : spec.env) {
    envp.push_back(const_cast<char*>(kv.c_str()));
  }
  envp.push_back(nullptr);

  pid_t pid = -1;
  try {
    pid = spawn_shell(spec, argv.data(), envp.data(), in_pipe[0], out_pipe[1], err_pipe[1]);
  } catch (const std::system_error&) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], in_pipe[0], in_pipe[1]}) {
      if (fd >= 0) {
        close(fd);
      }
    }
    throw;
  }
  m_pid = pid;
  live_children().insert(pid);
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

bool orphan_uses(const std::string& dir)
{
  const auto beneath = [&](const std::string& link) {
    char target[PATH_MAX + 1];
    const ssize_t n = readlink(link.c_str(), target, PATH_MAX);
    if (n <= 0) {
      return false;
    }
    const std::string_view t(target, static_cast<std::size_t>(n));
    return t == dir ||
           (t.size() > dir.size() && t.substr(0, dir.size()) == dir && t[dir.size()] == '/');
  };
  for (pid_t pid : our_children()) {
    if (live_children().count(pid) != 0) {
      continue;
    }
    const std::string proc = "/proc/" + std::to_string(pid);
    if (beneath(proc + "/cwd") || beneath(proc + "/root")) {
      return true;
    }
    DIR* fds = opendir((proc + "/fd").c_str());
    if (fds == nullptr) {
      continue;
    }
    bool found = false;
    while (const dirent* entry = readdir(fds)) {
      if (entry->d_name[0] != '.' && beneath(proc + "/fd/" + entry->d_name)) {
        found = true;
        break;
      }
    }
    closedir(fds);
    if (found) {
      return true;
    }
  }
  return false;
}

bool have_orphans()
{
  for (pid_t pid : our_children()) {
    if (live_children().count(pid) == 0) {
      return true;
    }
  }
  return false;
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
