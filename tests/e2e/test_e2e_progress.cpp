// End-to-end: the upload progress bar stays off in pipes unless --progress asks for it, and
// then it is erased before the summary.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

using namespace dc::test;

TEST_CASE("e2e: progress: off when stderr is not a terminal, drawn and erased with --progress")
{
  Cluster c(2);
  write_file(c.dir / "src/data.bin", std::string(300000, 'x'));
  MasterRun run = c.run({"--send", c.dir / "src/", "--cmd", "true"});
  CHECK(run.exit_code == 0);
  CHECK(run.err.find('\r') == std::string::npos);
  CHECK(run.err.find("upload [") == std::string::npos);

  run = c.run({"--progress", "--send", c.dir / "src/", "--cmd", "true"});
  CHECK(run.exit_code == 0);
  CHECK(run.err.find("\r\x1b[Kupload [") != std::string::npos);
  CHECK(run.err.find("2/2 nodes") != std::string::npos);
  // The summary starts on a clean line: the bar was erased just before it.
  CHECK(run.err.find("\r\x1b[K" + c[0].address()) != std::string::npos);
  CHECK(run.out.empty());

  run = c.run({"--progress", "--no-progress", "--cmd", "true"});
  CHECK(run.exit_code == 2);
  CHECK(run.err.find("--progress and --no-progress") != std::string::npos);
}
