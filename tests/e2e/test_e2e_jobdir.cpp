// End-to-end: job directories (removed, --keep, left by a crash, one worker per workdir) and
// several masters sharing one worker.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <memory>

using namespace dc::test;
using namespace std::chrono_literals;

TEST_CASE(
    "e2e: jobdir: removed after the run but --keep keeps it with the shipped files and prints it")
{
  Cluster c(1);
  const std::string label = c[0].address() + " | ";
  MasterRun run = c.run({"--cmd", "echo \"dir=$(pwd)\"; echo data > made-here.txt"});
  CHECK(run.exit_code == 0);
  const std::string dir = line_value(run.out, label + "dir=");
  REQUIRE(!dir.empty());
  CHECK(dir.rfind(c[0].workdir() + "/", 0) == 0);
  // Removed after the BYE, on the worker's own thread: soon, not necessarily before we look.
  CHECK(wait_until([&] { return !exists(dir); }));

  write_file(c.dir / "in/shipped.txt", "shipped content\n");
  run = c.run({"--keep", "--send", c.dir / "in/shipped.txt", "--cmd", "echo \"dir=$(pwd)\""});
  CHECK(run.exit_code == 0);
  const std::string kept = line_value(run.out, label + "dir=");
  REQUIRE(!kept.empty());
  CAPTURE(run.err);
  CHECK(run.err.find("kept " + kept) != std::string::npos);
  CHECK(read_file(kept + "/shipped.txt") == "shipped content\n");
}

TEST_CASE("e2e: jobdir: a worker started with a relative --workdir gives jobs absolute paths")
{
  TempDir home;
  const std::string key = make_key(home);
  WorkerProcess worker(WorkerConfig{key, {}, "127.0.0.1", {}, "relative-wd", home.path()});
  const std::string peers = write_peers(home, {worker.address()});
  const MasterRun run = run_master(
      {"--peers", peers, "--key", key, "--cmd",
       "cd /; echo \"dir=$DISTCOMP_JOB_DIR\"; echo \"tmp=$TMPDIR\"; [ -d \"$DISTCOMP_JOB_DIR\" ] "
       "&& [ -d \"$TMPDIR\" ] && echo found"});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  const std::string label = worker.address() + " | ";
  CHECK(line_value(run.out, label + "dir=").rfind(home / "relative-wd/job-", 0) == 0);
  CHECK(line_value(run.out, label + "tmp=").rfind(home / "relative-wd/job-", 0) == 0);
  CHECK(run.has_stdout_line(label + "found"));
}

TEST_CASE("e2e: jobdir: a restarted worker removes job dirs left by a crash but not kept ones")
{
  TempDir dir;
  WorkerConfig config;
  config.key = make_key(dir);
  config.workdir = dir / "workdir";
  config.extra = {"--kill-grace", "1"};
  auto worker = std::make_unique<WorkerProcess>(config);
  const std::string peers = write_peers(dir, {worker->address()});
  const std::string label = worker->address() + " | ";
  const std::vector<std::string> base = {"--peers", peers, "--key", config.key};

  std::vector<std::string> args = base;
  args.insert(args.end(), {"--keep", "--cmd", "echo \"dir=$(pwd)\""});
  const MasterRun keep = run_master(args);
  REQUIRE(keep.exit_code == 0);
  const std::string kept = line_value(keep.out, label + "dir=");
  REQUIRE(exists(kept));

  args = base;
  args.insert(
      args.end(),
      {"--cmd", "echo \"job=$DISTCOMP_JOB_ID\"; echo \"dir=$(pwd)\"; echo ready; sleep 300"});
  std::string job, crashed;
  {
    MasterProcess master(args);
    REQUIRE(master.wait_stdout(label + "ready\n", 20s));
    job = line_value(master.out(), label + "job=");
    crashed = line_value(master.out(), label + "dir=");
    CHECK(worker->stop(SIGKILL) == 128 + SIGKILL); // a crash: no clean-up at all
    // The orphaned job is ours to stop now (by pid, found by its job id).
    for (pid_t pid : processes_with_env("DISTCOMP_JOB_ID=" + job)) {
      kill(pid, SIGKILL);
    }
    master.wait(30s);
  }
  REQUIRE(!crashed.empty());
  REQUIRE(exists(crashed));

  WorkerProcess restarted(config);
  CHECK_FALSE(exists(crashed));
  CHECK(exists(kept));
  CHECK(restarted.log().find("removed 1 job dir") != std::string::npos);
}

TEST_CASE("e2e: jobdir: a second worker on the same workdir refuses to start")
{
  Cluster c(1);
  const MasterRun second = run_worker(
      {"--bind", "127.0.0.1", "--port", "0", "--key", c.key, "--workdir", c[0].workdir()}, 20s);
  CHECK(second.exit_code > 0);
  CHECK(second.err.find("in use") != std::string::npos);
  CHECK(second.err.find(c[0].workdir()) != std::string::npos);
  CHECK(c[0].running());
}

TEST_CASE("e2e: jobdir: four masters at once on one worker each get only their own output")
{
  Cluster c(1);
  const std::string label = c[0].address() + " | ";
  std::vector<std::unique_ptr<MasterProcess>> masters;
  for (int i = 0; i < 4; ++i) {
    const std::string name = "f" + std::to_string(i) + ".txt";
    write_file(c.dir / ("in/" + name), "payload " + std::to_string(i) + "\n");
    masters.push_back(std::make_unique<MasterProcess>(
        c.args({"--send", c.dir / ("in/" + name), "--cmd",
                "for i in $(seq 1 300); do cat " + name + "; done; ls | grep -v '^" + name +
                    "$' || true"})));
  }
  for (int i = 0; i < 4; ++i) {
    CAPTURE(i);
    const MasterRun run = masters[static_cast<std::size_t>(i)]->wait(60s);
    CHECK(run.exit_code == 0);
    const auto lines = run.stdout_lines();
    CHECK(lines.size() == 300);
    const std::string expected = label + "payload " + std::to_string(i);
    CHECK(std::count(lines.begin(), lines.end(), expected) == 300);
  }
}
