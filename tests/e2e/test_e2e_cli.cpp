// Command-line surface: --help documents the exit statuses, --version, usage errors exit 2.
#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

using namespace dc::test;

TEST_CASE("e2e: cli: master --help documents the exit statuses, --version names the program")
{
  const MasterRun help = run_master({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("Exit status: 0 all ok; 1 a command failed") != std::string::npos);
  CHECK(help.out.find("130 interrupted") != std::string::npos);
  CHECK(help.out.find("--connect-timeout") != std::string::npos);
  const MasterRun version = run_master({"--version"});
  CHECK(version.exit_code == 0);
  CHECK(version.out.rfind("distcomp master ", 0) == 0);
}

TEST_CASE("e2e: cli: usage errors are one line on stderr and exit 2")
{
  TempDir dir;
  const std::string key = make_key(dir);
  const auto one_error_line = [](const MasterRun& r) {
    return r.exit_code == 2 && r.out.empty() && r.stderr_lines().size() == 1 &&
           r.err.rfind("master: error: ", 0) == 0;
  };
  // No peers: neither $DISTCOMP_PEERS nor ~/.config/distcomp/peers of whoever runs the tests.
  CHECK(one_error_line(run_master({"--key", key, "--cmd", "true"}, std::chrono::seconds(60), "",
                                  {"HOME=" + dir.path(), "DISTCOMP_PEERS="})));
  CHECK(one_error_line(run_master({"--key", key, "--peers", dir / "nope", "--cmd", "x"})));
  CHECK(one_error_line(run_master({"--key", key, "--peers", dir / "p", "--bogus"})));
  write_file(dir / "p", "127.0.0.1:1\n");
  CHECK(one_error_line(run_master({"--key", key, "--peers", dir / "p"}))); // no command
  CHECK(one_error_line(
      run_master({"--key", key, "--peers", dir / "p", "--send", dir / "missing", "--cmd", "x"})));
  CHECK(one_error_line(run_master({"--key", dir / "nokey", "--peers", dir / "p", "--cmd", "x"})));
}
