// End-to-end: the master's local hash cache lives under $XDG_CACHE_HOME and --no-hash-cache
// leaves it alone; a file changed between runs is sent with its new content either way.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

using namespace dc::test;

TEST_CASE("e2e: hash cache: written under XDG_CACHE_HOME, skipped with --no-hash-cache")
{
  Cluster c(1);
  const std::string label = c[0].address() + " | ";
  write_file(c.dir / "src/a.txt", "alpha\n");
  const std::string cache_home = c.dir / "xdg";
  const std::vector<std::string> env = {"XDG_CACHE_HOME=" + cache_home};

  MasterRun run =
      run_master(c.args({"--no-hash-cache", "--send", c.dir / "src/", "--cmd", "cat a.txt"}),
                 std::chrono::seconds(60), "", env);
  CHECK(run.exit_code == 0);
  CHECK_FALSE(exists(cache_home + "/distcomp/hashes"));

  run = run_master(c.args({"--send", c.dir / "src/", "--cmd", "cat a.txt"}),
                   std::chrono::seconds(60), "", env);
  CHECK(run.exit_code == 0);
  CHECK(exists(cache_home + "/distcomp/hashes"));
  write_file(c.dir / "src/a.txt", "alpha, edited\n");
  run = run_master(c.args({"--send", c.dir / "src/", "--cmd", "cat a.txt"}),
                   std::chrono::seconds(60), "", env);
  CHECK(run.has_stdout_line(label + "alpha, edited"));
}
