#include "tests/support/processes.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace dc::test {
namespace {

[[noreturn]] void fail(const std::string& what)
{
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

std::vector<char*> c_args(const std::string& bin, const std::vector<std::string>& args)
{
  std::vector<char*> out;
  out.push_back(const_cast<char*>(bin.c_str()));
  for (const auto& a : args) {
    out.push_back(const_cast<char*>(a.c_str()));
  }
  out.push_back(nullptr);
  return out;
}

// Starts `bin args` with stdout/stderr on pipes (out_fd/err_fd returned), stdin /dev/null and
// our environment plus `extra_env` ("K=V", replacing a variable of ours with the same name).
pid_t spawn(const std::string& bin, const std::vector<std::string>& args, int& out_fd, int& err_fd,
            const std::string& cwd = "", const std::vector<std::string>& extra_env = {})
{
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    fail("pipe2");
  }
  auto argv = c_args(bin, args);
  std::vector<char*> envp; // built before fork: the child only calls async-signal-safe functions
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view ours = *e;
    const bool replaced = std::any_of(extra_env.begin(), extra_env.end(), [&](const auto& kv) {
      return ours.substr(0, ours.find('=') + 1) == kv.substr(0, kv.find('=') + 1);
    });
    if (!replaced) {
      envp.push_back(*e);
    }
  }
  for (const auto& kv : extra_env) {
    envp.push_back(const_cast<char*>(kv.c_str()));
  }
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    fail("fork");
  }
  if (pid == 0) {
    const int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) {
      _exit(126);
    }
    execve(bin.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  out_fd = out[0];
  err_fd = err[0];
  return pid;
}

std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds timeout)
{
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (r < 0) {
      return std::nullopt;
    }
    if (std::chrono::steady_clock::now() >= until) {
      return std::nullopt;
    }
    // Polling a child's exit is the test harness's only waiting loop (no pidfd in tests needed).
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::vector<std::string> split_lines(const std::string& text)
{
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    out.push_back(line);
  }
  return out;
}

} // namespace

std::string make_key(const TempDir& dir, const std::string& name)
{
  const std::string path = dir / name;
  const MasterRun r = run_master({"--keygen", "--key", path});
  if (r.exit_code != 0) {
    throw std::runtime_error("master --keygen failed: " + r.err);
  }
  return path;
}

OutputCollector::OutputCollector(int fd) : m_thread([this, fd] { loop(fd); }) {}

OutputCollector::~OutputCollector()
{
  join();
}

void OutputCollector::join()
{
  if (m_thread.joinable()) {
    m_thread.join();
  }
}

void OutputCollector::loop(int fd)
{
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    std::lock_guard lock(m_mutex);
    if (n <= 0) {
      m_eof = true;
      m_changed.notify_all();
      break;
    }
    m_text.append(buf, static_cast<std::size_t>(n));
    m_changed.notify_all();
  }
  close(fd);
}

std::string OutputCollector::text() const
{
  std::lock_guard lock(m_mutex);
  return m_text;
}

std::optional<std::string> OutputCollector::wait_for(const std::string& needle,
                                                     std::chrono::milliseconds timeout) const
{
  std::unique_lock lock(m_mutex);
  const bool found = m_changed.wait_for(
      lock, timeout, [&] { return m_text.find(needle) != std::string::npos || m_eof; });
  if (found && m_text.find(needle) != std::string::npos) {
    return m_text;
  }
  return std::nullopt;
}

bool OutputCollector::wait_eof(std::chrono::milliseconds timeout) const
{
  std::unique_lock lock(m_mutex);
  return m_changed.wait_for(lock, timeout, [&] { return m_eof; });
}

WorkerProcess::WorkerProcess(WorkerConfig config) : m_bind(config.bind)
{
  m_key = config.key.empty() ? make_key(m_dir) : config.key;
  m_workdir = config.workdir.empty() ? m_dir / "workdir" : config.workdir;
  std::vector<std::string> args = {"--bind", config.bind, "--port",    "0",
                                   "--key",  m_key,       "--workdir", m_workdir};
  args.insert(args.end(), config.extra.begin(), config.extra.end());
  int out_fd = -1, err_fd = -1;
  m_pid = spawn(DC_WORKER_BIN, args, out_fd, err_fd, config.cwd, config.env);
  close(out_fd);
  m_stderr = std::make_unique<OutputCollector>(err_fd);
  const auto text = m_stderr->wait_for("listening on ", std::chrono::seconds(20));
  if (!text) {
    const std::string log = m_stderr->text();
    kill(m_pid, SIGKILL);
    wait_exit(m_pid, std::chrono::seconds(5));
    m_status = -1;
    throw std::runtime_error("worker did not start: " + log);
  }
  // "worker: listening on 127.0.0.1:PORT" (the line may not be complete yet: wait for its end)
  const auto line_end = m_stderr->wait_for(":", std::chrono::seconds(1));
  std::string log;
  for (int i = 0; i < 100; ++i) {
    log = m_stderr->text();
    const auto at = log.find("listening on ");
    const auto nl = log.find('\n', at);
    if (nl != std::string::npos) {
      const std::string endpoint = log.substr(at + 13, nl - at - 13);
      m_port = static_cast<std::uint16_t>(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
      return;
    }
    m_stderr->wait_for("\n", std::chrono::milliseconds(50));
  }
  (void)line_end;
  throw std::runtime_error("worker printed no port: " + log);
}

WorkerProcess::~WorkerProcess()
{
  if (!m_status && m_pid > 0) {
    kill(m_pid, SIGKILL);
    wait_exit(m_pid, std::chrono::seconds(10));
  }
  m_stderr.reset();
}

bool WorkerProcess::wait_log(const std::string& needle, std::chrono::milliseconds timeout) const
{
  return m_stderr->wait_for(needle, timeout).has_value();
}

int WorkerProcess::stop(int sig, std::chrono::milliseconds timeout)
{
  if (m_status) {
    return *m_status;
  }
  kill(m_pid, sig);
  auto status = wait_exit(m_pid, timeout);
  if (!status) {
    kill(m_pid, SIGKILL);
    status = wait_exit(m_pid, std::chrono::seconds(5));
    m_status = -1;
    return -1;
  }
  m_status = *status;
  // The exit can be reaped before our reader thread has read the last log lines: wait for EOF,
  // so log() holds everything the worker wrote.
  m_stderr->wait_eof(std::chrono::seconds(5));
  return *status;
}

bool WorkerProcess::running() const
{
  return !m_status && kill(m_pid, 0) == 0;
}

std::vector<pid_t> WorkerProcess::descendants() const
{
  // Build the parent map once, then walk down from the worker.
  std::multimap<pid_t, pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto paren = line.rfind(')');
    if (paren == std::string::npos) {
      continue;
    }
    char state = 0;
    long ppid = 0;
    if (std::sscanf(line.c_str() + paren + 1, " %c %ld", &state, &ppid) == 2 && state != 'Z') {
      children.emplace(static_cast<pid_t>(ppid), static_cast<pid_t>(std::stol(name)));
    }
  }
  std::vector<pid_t> out;
  std::vector<pid_t> todo = {m_pid};
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    auto [b, e] = children.equal_range(p);
    for (auto it = b; it != e; ++it) {
      out.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return out;
}

bool MasterRun::has_stdout_line(const std::string& line) const
{
  for (const auto& l : stdout_lines()) {
    if (l == line) {
      return true;
    }
  }
  return false;
}

bool MasterRun::has_stderr_line(const std::string& line) const
{
  for (const auto& l : stderr_lines()) {
    if (l == line) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> MasterRun::stdout_lines() const
{
  return split_lines(out);
}
std::vector<std::string> MasterRun::stderr_lines() const
{
  return split_lines(err);
}

std::string MasterRun::summary_of(const std::string& label) const
{
  for (const auto& l : stderr_lines()) {
    if (l.rfind(label + " ", 0) == 0 && l.rfind(label + " | ", 0) != 0) {
      return l;
    }
  }
  return "";
}

namespace {

MasterRun run_program(const std::string& bin, const std::vector<std::string>& args,
                      std::chrono::seconds timeout, const std::string& cwd,
                      const std::vector<std::string>& env = {})
{
  int out_fd = -1, err_fd = -1;
  const pid_t pid = spawn(bin, args, out_fd, err_fd, cwd, env);
  OutputCollector out(out_fd);
  OutputCollector err(err_fd);
  MasterRun run;
  auto status = wait_exit(pid, timeout);
  if (!status) {
    kill(pid, SIGKILL);
    status = wait_exit(pid, std::chrono::seconds(5));
    run.exit_code = -1;
  } else {
    run.exit_code = *status;
  }
  out.join();
  err.join();
  run.out = out.text();
  run.err = err.text();
  return run;
}

} // namespace

MasterRun run_master(const std::vector<std::string>& args, std::chrono::seconds timeout,
                     const std::string& cwd, const std::vector<std::string>& env)
{
  return run_program(DC_MASTER_BIN, args, timeout, cwd, env);
}

MasterRun run_master_stdin(const std::vector<std::string>& args, const std::string& stdin_path,
                           std::chrono::seconds timeout)
{
  // sh opens the file and execs the master on it: the master's stdin is exactly that file.
  std::vector<std::string> sh_args = {"-c", "f=$1; shift; exec \"$0\" \"$@\" < \"$f\"",
                                      DC_MASTER_BIN, stdin_path};
  sh_args.insert(sh_args.end(), args.begin(), args.end());
  return run_program("/bin/sh", sh_args, timeout, "");
}

MasterRun run_worker(const std::vector<std::string>& args, std::chrono::seconds timeout)
{
  return run_program(DC_WORKER_BIN, args, timeout, "");
}

MasterRun run_master_head(const std::vector<std::string>& args, std::size_t lines,
                          std::chrono::seconds timeout)
{
  int out_fd = -1, err_fd = -1;
  const pid_t pid = spawn(DC_MASTER_BIN, args, out_fd, err_fd);
  OutputCollector err(err_fd);
  MasterRun run;
  std::size_t seen = 0;
  char c = 0;
  while (seen < lines) { // byte by byte, like `head`: never more than the lines it wants
    const ssize_t n = read(out_fd, &c, 1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    run.out += c;
    seen += c == '\n' ? 1 : 0;
  }
  close(out_fd);
  auto status = wait_exit(pid, timeout);
  if (!status) {
    kill(pid, SIGKILL);
    wait_exit(pid, std::chrono::seconds(5));
    run.exit_code = -1;
  } else {
    run.exit_code = *status;
  }
  err.join();
  run.err = err.text();
  return run;
}

MasterProcess::MasterProcess(const std::vector<std::string>& args)
{
  int out_fd = -1, err_fd = -1;
  m_pid = spawn(DC_MASTER_BIN, args, out_fd, err_fd);
  m_out = std::make_unique<OutputCollector>(out_fd);
  m_err = std::make_unique<OutputCollector>(err_fd);
}

MasterProcess::~MasterProcess()
{
  if (!m_status) {
    kill(m_pid, SIGKILL);
    wait_exit(m_pid, std::chrono::seconds(5));
  }
}

bool MasterProcess::wait_stdout(const std::string& needle, std::chrono::milliseconds timeout) const
{
  return m_out->wait_for(needle, timeout).has_value();
}

bool MasterProcess::wait_stderr(const std::string& needle, std::chrono::milliseconds timeout) const
{
  return m_err->wait_for(needle, timeout).has_value();
}

void MasterProcess::signal(int sig) const
{
  kill(m_pid, sig);
}

MasterRun MasterProcess::wait(std::chrono::seconds timeout)
{
  MasterRun run;
  auto status = wait_exit(m_pid, timeout);
  if (!status) {
    kill(m_pid, SIGKILL);
    wait_exit(m_pid, std::chrono::seconds(5));
    run.exit_code = -1;
  } else {
    run.exit_code = *status;
  }
  m_status = run.exit_code;
  m_out->join();
  m_err->join();
  run.out = m_out->text();
  run.err = m_err->text();
  return run;
}

std::string write_peers(const TempDir& dir, const std::vector<std::string>& lines,
                        const std::string& name)
{
  std::string text;
  for (const auto& l : lines) {
    text += l + "\n";
  }
  const std::string path = dir / name;
  write_file(path, text);
  return path;
}

std::vector<pid_t> processes_with_env(const std::string& needle)
{
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::ifstream env(entry.path() / "environ", std::ios::binary);
    std::string item;
    while (std::getline(env, item, '\0')) {
      if (item == needle) {
        out.push_back(static_cast<pid_t>(std::stol(name)));
        break;
      }
    }
  }
  return out;
}

std::uint16_t unused_port()
{
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout)
{
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= until) {
      return done();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string line_value(const std::string& text, const std::string& prefix)
{
  for (const auto& line : split_lines(text)) {
    if (line.rfind(prefix, 0) == 0) {
      return line.substr(prefix.size());
    }
  }
  return "";
}

SilentListener::SilentListener()
{
  m_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (m_fd < 0 || bind(m_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(m_fd, 16) != 0 || getsockname(m_fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      pipe2(m_stop, O_CLOEXEC) != 0) {
    fail("silent listener");
  }
  m_port = ntohs(addr.sin_port);
  m_thread = std::thread([this] {
    std::vector<int> accepted; // held open, never read or written, closed at the end
    for (;;) {
      pollfd fds[2] = {{m_fd, POLLIN, 0}, {m_stop[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno != EINTR) {
        break;
      }
      if (fds[1].revents != 0) {
        break;
      }
      if (fds[0].revents != 0) {
        const int fd = accept4(m_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) {
          accepted.push_back(fd);
        }
      }
    }
    for (int fd : accepted) {
      close(fd);
    }
  });
}

SilentListener::~SilentListener()
{
  [[maybe_unused]] const auto n = write(m_stop[1], "x", 1);
  m_thread.join();
  close(m_fd);
  close(m_stop[0]);
  close(m_stop[1]);
}

Cluster::Cluster(std::size_t n, WorkerConfig base)
{
  key = make_key(dir);
  base.key = key;
  if (std::find(base.extra.begin(), base.extra.end(), "--kill-grace") == base.extra.end()) {
    base.extra.insert(base.extra.end(), {"--kill-grace", "1"});
  }
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < n; ++i) {
    workers.push_back(std::make_unique<WorkerProcess>(base));
    lines.push_back(workers.back()->address());
  }
  peers = write_peers(dir, lines);
}

std::vector<std::string> Cluster::args(const std::vector<std::string>& more) const
{
  std::vector<std::string> out = {"--peers", peers, "--key", key, "--connect-timeout", "5"};
  out.insert(out.end(), more.begin(), more.end());
  return out;
}

} // namespace dc::test
