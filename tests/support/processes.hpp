#pragma once
// Test helpers that start the real binaries: a worker on 127.0.0.1:0 with its own key and
// workdir, and the master with captured stdout/stderr. Every process is stopped by its pid.

#include "tests/support/temp_files.hpp"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace dc::test {

// Creates a key file with `master --keygen` (mode 0600) and returns its path.
std::string make_key(const TempDir& dir, const std::string& name = "cluster.key");

// Collects a child's output from a pipe on a thread, so the child never blocks on it.
class OutputCollector {
public:
  explicit OutputCollector(int fd);
  ~OutputCollector();
  std::string text() const;
  // Waits until the collected text contains `needle` (or EOF / timeout). Returns the text.
  std::optional<std::string> wait_for(const std::string& needle,
                                      std::chrono::milliseconds timeout) const;
  void join(); // waits for EOF
  // Waits until EOF (the writer and everything sharing the pipe exited) or `timeout`.
  bool wait_eof(std::chrono::milliseconds timeout) const;

private:
  void loop(int fd);
  mutable std::mutex m_mutex;
  mutable std::condition_variable m_changed;
  std::string m_text;
  bool m_eof = false;
  std::thread m_thread;
};

struct WorkerConfig {
  std::string key;                // key file; default: a fresh one in the worker's dir
  std::vector<std::string> extra; // more worker options
  std::string bind = "127.0.0.1";
  std::vector<std::string> env; // added to the worker's own environment ("K=V")
  std::string workdir;          // default: "workdir" in the worker's own temp dir
  std::string cwd;              // the worker's working directory; default: ours
};

class WorkerProcess {
public:
  explicit WorkerProcess(WorkerConfig config = {});
  ~WorkerProcess(); // SIGKILL and reap if still running
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  std::string address() const { return m_bind + ":" + std::to_string(m_port); }
  std::uint16_t port() const { return m_port; }
  pid_t pid() const { return m_pid; }
  const std::string& key() const { return m_key; }
  const std::string& workdir() const { return m_workdir; }
  const TempDir& dir() const { return m_dir; }
  std::string log() const { return m_stderr->text(); }
  bool wait_log(const std::string& needle,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  // Sends `sig` and waits for exit; returns the exit status (or 128+signal).
  int stop(int sig = 15, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  bool running() const;
  // Pids of every descendant of the worker (from /proc).
  std::vector<pid_t> descendants() const;

private:
  TempDir m_dir;
  std::string m_key;
  std::string m_workdir;
  std::string m_bind;
  std::uint16_t m_port = 0;
  pid_t m_pid = -1;
  std::optional<int> m_status;
  std::unique_ptr<OutputCollector> m_stderr;
};

struct MasterRun {
  int exit_code = -1;
  std::string out;
  std::string err;
  bool has_stdout_line(const std::string& line) const;
  bool has_stderr_line(const std::string& line) const;
  std::vector<std::string> stdout_lines() const;
  std::vector<std::string> stderr_lines() const;
  // The summary line of the node labelled `label` on stderr ("" if none).
  std::string summary_of(const std::string& label) const;
};

// Runs the master to completion with the given arguments (killed after `timeout`), in `cwd` if
// given, with our environment plus `env` ("K=V", replacing ours of the same name).
MasterRun run_master(const std::vector<std::string>& args,
                     std::chrono::seconds timeout = std::chrono::seconds(60),
                     const std::string& cwd = "", const std::vector<std::string>& env = {});

// Runs the master to completion with its stdin read from the file `stdin_path`.
MasterRun run_master_stdin(const std::vector<std::string>& args, const std::string& stdin_path,
                           std::chrono::seconds timeout = std::chrono::seconds(60));

// Runs the worker to completion (for start-up failures; killed after `timeout`).
MasterRun run_worker(const std::vector<std::string>& args,
                     std::chrono::seconds timeout = std::chrono::seconds(30));

// Runs the master with its stdout on a pipe that the test closes after reading `lines` lines,
// as `master ... | head -n lines` does; `out` holds what was read.
MasterRun run_master_head(const std::vector<std::string>& args, std::size_t lines,
                          std::chrono::seconds timeout = std::chrono::seconds(60));

// A master started in the background, for signal tests.
class MasterProcess {
public:
  explicit MasterProcess(const std::vector<std::string>& args);
  ~MasterProcess();
  pid_t pid() const { return m_pid; }
  bool wait_stdout(const std::string& needle, std::chrono::milliseconds timeout) const;
  bool wait_stderr(const std::string& needle, std::chrono::milliseconds timeout) const;
  std::string out() const { return m_out->text(); }
  std::string err() const { return m_err->text(); }
  void signal(int sig) const;
  MasterRun wait(std::chrono::seconds timeout = std::chrono::seconds(60));

private:
  pid_t m_pid = -1;
  std::unique_ptr<OutputCollector> m_out;
  std::unique_ptr<OutputCollector> m_err;
  std::optional<int> m_status;
};

// Writes a peers file with one line per address; returns its path.
std::string write_peers(const TempDir& dir, const std::vector<std::string>& lines,
                        const std::string& name = "peers.txt");

// Processes (pids) whose environment contains `needle` ("DISTCOMP_JOB_ID=…").
std::vector<pid_t> processes_with_env(const std::string& needle);

// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
std::uint16_t unused_port();

// Polls `done` every 20 ms until it holds or `timeout` passes; returns its last value. For
// conditions nothing notifies us of (a process gone, a directory removed), never as a sleep.
bool wait_until(const std::function<bool()>& done,
                std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Whether `text` contains `needle`.
inline bool contains(const std::string& text, const std::string& needle)
{
  return text.find(needle) != std::string::npos;
}

// The rest of the first line of `text` that starts with `prefix` ("" if none).
std::string line_value(const std::string& text, const std::string& prefix);

// A listener on 127.0.0.1:0 that accepts connections and never sends or reads a byte.
class SilentListener {
public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  std::string address() const { return "127.0.0.1:" + std::to_string(m_port); }

private:
  int m_fd = -1;
  int m_stop[2] = {-1, -1};
  std::uint16_t m_port = 0;
  std::thread m_thread;
};

// `n` workers on 127.0.0.1 sharing one fresh key (each with `--kill-grace 1` unless `base`
// says otherwise) and a peers file that lists them in order.
class Cluster {
public:
  explicit Cluster(std::size_t n, WorkerConfig base = {});
  WorkerProcess& operator[](std::size_t i) { return *workers.at(i); }
  std::size_t size() const { return workers.size(); }
  // --peers, --key and --connect-timeout 5, then `more`.
  std::vector<std::string> args(const std::vector<std::string>& more) const;
  MasterRun run(const std::vector<std::string>& more,
                std::chrono::seconds timeout = std::chrono::seconds(60)) const
  {
    return run_master(args(more), timeout);
  }

  TempDir dir;
  std::string key;
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  std::string peers;
};

} // namespace dc::test
