// End-to-end: --stdin reads the master's stdin once and gives it to every command on every node,
// under the worker's flow-control window.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

using namespace dc::test;
using namespace std::chrono_literals;

namespace {

// Deterministic, poorly compressible bytes: many times the 256 KiB stdin window.
std::string pseudo_random(std::size_t n)
{
  std::string out(n, '\0');
  std::uint32_t x = 2463534242u;
  for (char& c : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return out;
}

} // namespace

TEST_CASE("e2e: stdin: --stdin gives the same bytes to every node and every command, in full")
{
  Cluster c(2);
  const std::string input = pseudo_random(3 << 20) + "\nlast line\n";
  const std::string path = c.dir.path() + "/input";
  write_file(path, input);
  const std::string expected_size = std::to_string(input.size());
  const MasterRun run = run_master_stdin(
      c.args({"--stdin", "--cmd", "wc -c", "--cmd", "cksum | cut -d' ' -f1", "--cmd", "tail -n 1"}),
      path);
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  // The checksum of the same bytes, computed here with the same tool.
  REQUIRE(std::system(("cksum < '" + path + "' | cut -d' ' -f1 > '" + path + ".sum'").c_str()) ==
          0);
  std::string sum = read_file(path + ".sum");
  sum.pop_back(); // newline
  for (std::size_t node = 0; node < 2; ++node) {
    const std::string tag = c[node].address() + " | ";
    CHECK(run.has_stdout_line(tag + expected_size));
    CHECK(run.has_stdout_line(tag + sum));
    CHECK(run.has_stdout_line(tag + "last line"));
  }
}

TEST_CASE("e2e: stdin: commands that ignore or stop reading stdin end normally, without --stdin "
          "stdin is empty")
{
  Cluster c(2);
  const std::string path = c.dir.path() + "/input";
  write_file(path, pseudo_random(2 << 20));
  const MasterRun ignoring = run_master_stdin(
      c.args({"--stdin", "--cmd", "echo ignored", "--cmd", "head -c 5 | wc -c"}), path, 60s);
  CAPTURE(ignoring.err);
  CHECK(ignoring.exit_code == 0);
  CHECK(ignoring.has_stdout_line(c[0].address() + " | 5"));
  CHECK(ignoring.has_stdout_line(c[1].address() + " | ignored"));
  write_file(c.dir.path() + "/empty", "");
  const MasterRun empty =
      run_master_stdin(c.args({"--stdin", "--cmd", "wc -c"}), c.dir.path() + "/empty");
  CHECK(empty.exit_code == 0);
  CHECK(empty.has_stdout_line(c[0].address() + " | 0"));
  // Without --stdin the job's stdin is /dev/null: cat ends at once.
  const MasterRun without = run_master_stdin(c.args({"--cmd", "cat; echo done"}), path);
  CHECK(without.exit_code == 0);
  CHECK(without.has_stdout_line(c[1].address() + " | done"));
  CHECK(without.out.size() < 100);
}
