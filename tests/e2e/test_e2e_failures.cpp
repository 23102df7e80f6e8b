// End-to-end: unreachable and silent nodes, command timeouts, Ctrl-C, a master killed mid-run
// and a worker stopped mid-job. Whatever happens, no process of the job may survive it.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>

using namespace dc::test;
using namespace std::chrono_literals;

namespace {

bool job_gone(const std::string& job)
{
  return processes_with_env("DISTCOMP_JOB_ID=" + job).empty();
}

// A job that says who it is and where, then sleeps until it is stopped.
const std::string k_sleeper =
    "echo \"job=$DISTCOMP_JOB_ID\"; echo \"dir=$(pwd)\"; echo ready; sleep 300";

} // namespace

TEST_CASE(
    "e2e: failures: an unreachable node next to a good one: the good one runs and the exit is 3")
{
  Cluster c(1);
  const std::string bad = "127.0.0.1:" + std::to_string(unused_port());
  const std::string peers = write_peers(c.dir, {c[0].address(), bad}, "with-dead.txt");
  const auto started = std::chrono::steady_clock::now();
  const MasterRun run = run_master(
      {"--peers", peers, "--key", c.key, "--connect-timeout", "20", "--cmd", "echo hello"}, 60s);
  CHECK(std::chrono::steady_clock::now() - started < 15s); // refused at once, not timed out
  CHECK(run.exit_code == 3);
  CHECK(run.stdout_lines() == std::vector<std::string>{c[0].address() + " | hello"});
  CAPTURE(run.err);
  CHECK(contains(run.summary_of(c[0].address()), " ok "));
  CHECK(contains(run.summary_of(bad), "unreachable"));
}

TEST_CASE("e2e: failures: a node that accepts and never answers is unreachable after the connect "
          "timeout and the exit is 3")
{
  Cluster c(1);
  SilentListener silent;
  const std::string peers =
      write_peers(c.dir, {silent.address(), c[0].address()}, "with-silent.txt");
  const auto started = std::chrono::steady_clock::now();
  const MasterRun run = run_master(
      {"--peers", peers, "--key", c.key, "--connect-timeout", "1", "--cmd", "echo hello"}, 60s);
  CHECK(std::chrono::steady_clock::now() - started < 15s);
  CHECK(run.exit_code == 3);
  CHECK(run.stdout_lines() == std::vector<std::string>{c[0].address() + " | hello"});
  CAPTURE(run.err);
  CHECK(contains(run.summary_of(c[0].address()), " ok "));
  const std::string line = run.summary_of(silent.address());
  CHECK(contains(line, "unreachable"));
  CHECK(contains(line, "timeout"));
}

TEST_CASE("e2e: failures: --timeout 1 with `sleep 30` is exit 4 and the sleep is gone")
{
  Cluster c(1);
  const auto started = std::chrono::steady_clock::now();
  const MasterRun run =
      c.run({"--timeout", "1", "--cmd", "echo \"job=$DISTCOMP_JOB_ID\"; sleep 30"}, 60s);
  CHECK(std::chrono::steady_clock::now() - started < 15s);
  CHECK(run.exit_code == 4);
  CAPTURE(run.err);
  CHECK(contains(run.summary_of(c[0].address()), "timeout"));
  const std::string job = line_value(run.out, c[0].address() + " | job=");
  REQUIRE(!job.empty());
  CHECK(wait_until([&] { return job_gone(job); }));
}

TEST_CASE(
    "e2e: failures: Ctrl-C cancels every node with exit 130 and the summary says cancelled and no "
    "process is left")
{
  Cluster c(2);
  MasterProcess master(c.args({"--cmd", k_sleeper}));
  REQUIRE(master.wait_stdout(c[0].address() + " | ready\n", 20s));
  REQUIRE(master.wait_stdout(c[1].address() + " | ready\n", 20s));
  const std::string job = line_value(master.out(), c[0].address() + " | job=");
  REQUIRE(!job.empty());
  REQUIRE_FALSE(job_gone(job)); // the sleeps run: the check below means something
  master.signal(SIGINT);
  const MasterRun run = master.wait(30s);
  CHECK(run.exit_code == 130);
  CAPTURE(run.err);
  CHECK(contains(run.summary_of(c[0].address()), "cancelled"));
  CHECK(contains(run.summary_of(c[1].address()), "cancelled"));
  CHECK(wait_until([&] { return job_gone(job); }));
  CHECK(wait_until([&] { return used_job_dirs(c[0].workdir()).empty(); }));
  CHECK(wait_until([&] { return used_job_dirs(c[1].workdir()).empty(); }));
}

TEST_CASE(
    "e2e: failures: a master killed mid-run: the worker kills the job and removes its directory "
    "and serves the next one")
{
  Cluster c(1);
  MasterProcess master(c.args({"--cmd", k_sleeper}));
  REQUIRE(master.wait_stdout(c[0].address() + " | ready\n", 20s));
  const std::string job = line_value(master.out(), c[0].address() + " | job=");
  const std::string dir = line_value(master.out(), c[0].address() + " | dir=");
  REQUIRE(!job.empty());
  REQUIRE(exists(dir));
  master.signal(SIGKILL);
  CHECK(master.wait(10s).exit_code == 128 + SIGKILL);
  CHECK(c[0].wait_log("disconnected without BYE", 10s));
  CHECK(wait_until([&] { return job_gone(job); }));
  CHECK(wait_until([&] { return !exists(dir); }));
  const MasterRun next = c.run({"--cmd", "echo again"});
  CHECK(next.exit_code == 0);
  CHECK(next.has_stdout_line(c[0].address() + " | again"));
}

TEST_CASE("e2e: failures: a worker stopped with SIGTERM mid-job exits 0 promptly and the master "
          "reports the node lost")
{
  Cluster c(2);
  // The partial last line is printed when the master is done with a node: a hook to wait on.
  // "ready" goes to stderr after `printf tail` returned, so the partial line is surely in the
  // pipe before SIGTERM: the worker must drain it, not lose it.
  MasterProcess master(c.args(
      {"--cmd", "echo \"job=$DISTCOMP_JOB_ID\" >&2; printf tail; echo ready >&2; sleep 300"}));
  REQUIRE(master.wait_stderr(c[0].address() + " | ready\n", 20s));
  REQUIRE(master.wait_stderr(c[1].address() + " | ready\n", 20s));
  const std::string job = line_value(master.err(), c[0].address() + " | job=");
  REQUIRE(!job.empty());
  const auto stopping = std::chrono::steady_clock::now();
  CHECK(c[0].stop(SIGTERM, 20s) == 0);
  // The job dies at its SIGTERM; kill grace 1 s: nothing to wait for beyond that.
  CHECK(std::chrono::steady_clock::now() - stopping < 4s);
  CHECK(c[0].log().find("did not end in time") == std::string::npos);
  CHECK(used_job_dirs(c[0].workdir()).empty());
  CHECK(master.wait_stdout(c[0].address() + " | tail [no newline]\n", 20s));
  // The other node keeps running until we interrupt the master.
  CHECK(c[1].running());
  CHECK(master.out().find(c[1].address() + " | tail") == std::string::npos);
  master.signal(SIGINT);
  const MasterRun run = master.wait(30s);
  CAPTURE(run.err);
  const std::string line = run.summary_of(c[0].address());
  CHECK(contains(line, "lost"));
  CHECK(contains(line, "shut down"));
  CHECK(contains(run.summary_of(c[1].address()), "cancelled"));
  CHECK(run.exit_code == 130);
  CHECK(wait_until([&] { return job_gone(job); }));
}

TEST_CASE(
    "e2e: failures: a worker stopped with SIGTERM: a one-node run ends with exit 3 and the node "
    "lost")
{
  Cluster c(1);
  MasterProcess master(c.args({"--cmd", k_sleeper}));
  REQUIRE(master.wait_stdout(c[0].address() + " | ready\n", 20s));
  const std::string job = line_value(master.out(), c[0].address() + " | job=");
  REQUIRE(!job.empty());
  const auto stopping = std::chrono::steady_clock::now();
  CHECK(c[0].stop(SIGTERM, 20s) == 0);
  CHECK(std::chrono::steady_clock::now() - stopping < 4s);
  const MasterRun run = master.wait(30s);
  CAPTURE(run.err);
  CHECK(run.exit_code == 3);
  const std::string line = run.summary_of(c[0].address());
  CHECK(contains(line, "lost"));
  CHECK(contains(line, "shut down"));
  CHECK(job_gone(job));
  CHECK(used_job_dirs(c[0].workdir()).empty());
}

TEST_CASE("e2e: failures: an idle worker stopped with SIGTERM exits 0 promptly")
{
  Cluster c(1);
  const auto stopping = std::chrono::steady_clock::now();
  CHECK(c[0].stop(SIGTERM, 20s) == 0);
  CHECK(std::chrono::steady_clock::now() - stopping < 3s);
  CHECK(c[0].log().find("did not end in time") == std::string::npos);
  CHECK(c[0].log().find("stopped") != std::string::npos);
}
