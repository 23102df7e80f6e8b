#include "worker/process.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

using namespace dc;
using namespace dc::worker;

namespace {

// Runs `command` in `cwd` to its end on a fresh io_context; returns its stdout and exit status.
std::pair<std::string, ExitStatus> run_shell(const std::string& command, const std::string& cwd)
{
  asio::io_context io;
  std::string out;
  ExitStatus status;
  ChildProcess child(io.get_executor(), SpawnSpec{command, cwd, {"PATH=/usr/bin:/bin"}, false});
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        char buf[4096];
        for (;;) {
          auto [ec, n] =
              co_await child.out().async_read_some(asio::buffer(buf), as_tuple(use_awaitable));
          out.append(buf, n);
          if (ec) {
            break;
          }
        }
        status = co_await child.wait();
      },
      asio::detached);
  io.run();
  return {out, status};
}

} // namespace

TEST_CASE("worker process: a command runs in its cwd in a process group of its own and its "
          "exit code comes back")
{
  const std::string cwd = std::filesystem::temp_directory_path().string();
  const auto [out, status] =
      run_shell("pwd; [ \"$(cut -d' ' -f5 /proc/$$/stat)\" = $$ ] && echo leader; exit 7", cwd);
  CHECK(out == cwd + "\nleader\n");
  CHECK(status.code == 7);
  CHECK(!status.signal);
}

TEST_CASE("worker process: the job starts with no signal ignored or blocked, though the worker "
          "ignores SIGPIPE")
{
  struct sigaction old {};
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  REQUIRE(sigaction(SIGPIPE, &ignore, &old) == 0);
  const auto [out, status] = run_shell("grep -E '^Sig(Ign|Blk)' /proc/self/status", "/");
  sigaction(SIGPIPE, &old, nullptr);
  CHECK(out == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
  CHECK(status.code == 0);
}

TEST_CASE("worker process: a job dir that is gone is a spawn error naming it, not a child")
{
  asio::io_context io;
  CHECK_THROWS_WITH_AS(
      ChildProcess(io.get_executor(), SpawnSpec{"true", "/nonexistent/dc-job-dir", {}, false}),
      doctest::Contains("cannot start /bin/sh in the job directory"), std::system_error);
}
