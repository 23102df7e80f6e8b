// Addresses: IPv6 literals in peers files, the dual-stack default bind, names that resolve.
#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

using namespace dc::test;

TEST_CASE("e2e: network: an IPv6 worker is reached through a [v6]:port peers line")
{
  TempDir dir;
  const std::string key = make_key(dir);
  WorkerConfig config;
  config.key = key;
  config.bind = "::1";
  WorkerProcess worker(config);
  const std::string label = "[::1]:" + std::to_string(worker.port());
  const std::string peers = write_peers(dir, {label});
  const MasterRun run = run_master({"--key", key, "--peers", peers, "--cmd", "echo hi v6"});
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line(label + " | hi v6"));
}

TEST_CASE("e2e: network: a worker bound to :: serves IPv4 and IPv6 masters, names resolve")
{
  TempDir dir;
  const std::string key = make_key(dir);
  WorkerConfig config;
  config.key = key;
  config.bind = "::";
  WorkerProcess worker(config);
  const std::string port = std::to_string(worker.port());
  const std::string peers =
      write_peers(dir, {"127.0.0.1:" + port, "[::1]:" + port, "localhost:" + port});
  const MasterRun run = run_master({"--key", key, "--peers", peers, "--cmd", "echo up"});
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line("127.0.0.1:" + port + " | up"));
  CHECK(run.has_stdout_line("[::1]:" + port + " | up"));
  CHECK(run.has_stdout_line("localhost:" + port + " | up"));
}

TEST_CASE("e2e: network: a name that does not resolve is unreachable, the others run")
{
  TempDir dir;
  const std::string key = make_key(dir);
  WorkerConfig config;
  config.key = key;
  WorkerProcess worker(config);
  const std::string peers = write_peers(dir, {worker.address(), "no-such-host.invalid"});
  const MasterRun run =
      run_master({"--key", key, "--peers", peers, "--connect-timeout", "2", "--cmd", "echo fine"});
  CHECK(run.exit_code == 3);
  CHECK(run.has_stdout_line(worker.address() + " | fine"));
  CHECK(run.err.find("no-such-host.invalid") != std::string::npos);
  CHECK(run.err.find("unreachable") != std::string::npos);
}
