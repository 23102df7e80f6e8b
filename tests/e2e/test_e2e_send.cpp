// End-to-end: --send follows rsync's convention, keeps the executable bit and modification
// times, and refuses symbolic links before anything runs.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace dc::test;

namespace {

constexpr time_t k_mtime = 1600000000; // 2020-09-13, so a fresh "now" cannot pass by chance

void set_mtime(const std::string& path, time_t when)
{
  const timespec times[2] = {{when, 0}, {when, 0}};
  REQUIRE(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

// src/a.txt, src/script.sh (0755), src/sub/deep/b.txt, all with mtime k_mtime (+1, +2).
std::string make_tree(const TempDir& dir)
{
  const std::string src = dir / "src";
  write_file(src + "/a.txt", "alpha\n");
  write_file(src + "/script.sh", "#!/bin/sh\necho \"script ran in $(basename \"$PWD\")\"\n", 0755);
  write_file(src + "/sub/deep/b.txt", "beta\n");
  set_mtime(src + "/a.txt", k_mtime);
  set_mtime(src + "/script.sh", k_mtime + 1);
  set_mtime(src + "/sub/deep/b.txt", k_mtime + 2);
  return src;
}

} // namespace

TEST_CASE(
    "e2e: send: 'dir/' sends the contents and 'dir' the directory itself and a file its base name")
{
  Cluster c(1);
  const std::string src = make_tree(c.dir);
  const std::string label = c[0].address() + " | ";

  MasterRun run = c.run(
      {"--send", src + "/", "--cmd", "cat a.txt sub/deep/b.txt; test ! -e src && echo no-src-dir"});
  CHECK(run.exit_code == 0);
  CHECK(run.stdout_lines() ==
        std::vector<std::string>{label + "alpha", label + "beta", label + "no-src-dir"});

  run = c.run({"--send", src, "--cmd",
               "cat src/a.txt src/sub/deep/b.txt; test ! -e a.txt && "
               "echo no-a-at-root"});
  CHECK(run.exit_code == 0);
  CHECK(run.stdout_lines() ==
        std::vector<std::string>{label + "alpha", label + "beta", label + "no-a-at-root"});

  run = c.run({"--send", src + "/sub/deep/b.txt", "--send", src + "/a.txt", "--cmd",
               "cat b.txt a.txt; test ! -e sub && test ! -e deep && echo flat"});
  CHECK(run.exit_code == 0);
  CHECK(run.stdout_lines() ==
        std::vector<std::string>{label + "beta", label + "alpha", label + "flat"});
}

TEST_CASE("e2e: send: the executable bit and modification times are kept")
{
  Cluster c(2);
  const std::string src = make_tree(c.dir);
  const MasterRun run = c.run({"--send", src + "/", "--cmd",
                               "./script.sh && test ! -x a.txt && test -x script.sh && "
                               "stat -c 'mtime %n %Y' a.txt script.sh sub/deep/b.txt"});
  CHECK(run.exit_code == 0);
  for (std::size_t i = 0; i < c.size(); ++i) {
    const std::string label = c[i].address() + " | ";
    CAPTURE(label);
    CHECK(run.out.find(label + "script ran in job-") != std::string::npos);
    CHECK(run.has_stdout_line(label + "mtime a.txt " + std::to_string(k_mtime)));
    CHECK(run.has_stdout_line(label + "mtime script.sh " + std::to_string(k_mtime + 1)));
    CHECK(run.has_stdout_line(label + "mtime sub/deep/b.txt " + std::to_string(k_mtime + 2)));
  }
}

TEST_CASE("e2e: send: a symlink in the tree is exit 2 listing its path and nothing runs")
{
  Cluster c(1);
  const std::string src = make_tree(c.dir);
  REQUIRE(symlink("a.txt", (src + "/sub/link-to-a").c_str()) == 0);
  const std::string marker = c.dir / "ran";
  // The nodes connect while the files are scanned: the refusal must stop them before any view
  // shows a node (--json would print an event per node) and before anything runs.
  const MasterRun run =
      c.run({"--json", "--send", src + "/", "--cmd", "echo ran; touch '" + marker + "'"});
  CHECK(run.exit_code == 2);
  CHECK(run.err.find("sub/link-to-a") != std::string::npos);
  CHECK(run.out.empty());
  CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1); // the one line that says why
  CHECK_FALSE(exists(marker));
}
