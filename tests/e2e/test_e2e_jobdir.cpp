// End-to-end: job directories (removed, --keep, left by a crash, one worker per workdir) and
// several masters sharing one worker.

#include "common/messages.hpp"
#include "tests/support/processes.hpp"
#include "tests/support/raw_client.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <memory>
#include <sstream>

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

namespace {

// Prints a job dir as type, mode, path and checksum lines (TMPDIR left out), so two runs can be
// compared; then how many entries TMPDIR holds.
const char* const k_describe_job_dir =
    "find . -path ./.tmp -prune -o -printf '%y %m %p\\n' | LC_ALL=C sort; "
    "find . -path ./.tmp -prune -o -type f -exec md5sum {} + | LC_ALL=C sort; "
    "echo \"tmp entries: $(ls -A \"$TMPDIR\" | wc -l)\"";

std::vector<std::string> without_dir_lines(std::vector<std::string> lines)
{
  lines.erase(std::remove_if(lines.begin(), lines.end(),
                             [](const std::string& l) { return l.find("| dir=") != l.npos; }),
              lines.end());
  return lines;
}

} // namespace

TEST_CASE("e2e: jobdir: the next job with files reuses the last job dir yet sees only the files "
          "sent")
{
  WorkerConfig config;
  config.extra = {"--verbose"};
  Cluster c(1, config);
  const std::string label = c[0].address() + " | ";
  // Enough files that most were written a timestamp tick before the job started (reusable).
  const std::string src = c.dir / "src";
  for (int i = 0; i < 400; ++i) {
    write_file(src + "/d" + std::to_string(i % 10) + "/f" + std::to_string(i) + ".txt",
               "file " + std::to_string(i) + "\n");
  }
  write_file(src + "/a.txt", "alpha\n");
  write_file(src + "/sub/c.txt", "charlie\n");
  write_file(src + "/run.sh", "#!/bin/sh\necho run\n", 0755);

  // The first job changes, replaces, adds and hides things, in its dir and in its TMPDIR.
  MasterRun run =
      c.run({"--send", src + "/", "--cmd",
             "echo \"dir=$(pwd)\"; echo tampered >> a.txt; rm sub/c.txt; mkdir sub/c.txt; "
             "ln -s /etc sub/link; echo out > result.txt; chmod 600 run.sh; chmod 000 d0; "
             "mkdir -p deep/new; cp -p d1/f1.txt d1/f1.bak; echo t > \"$TMPDIR/t\""});
  REQUIRE(run.exit_code == 0);
  const std::string first_dir = line_value(run.out, label + "dir=");
  REQUIRE(!first_dir.empty());

  run = c.run(
      {"--send", src + "/", "--cmd", std::string("echo \"dir=$(pwd)\"; ") + k_describe_job_dir});
  CAPTURE(run.err);
  REQUIRE(run.exit_code == 0);
  const std::string second_dir = line_value(run.out, label + "dir=");
  CHECK(second_dir != first_dir); // a new path, as for every job
  CHECK_FALSE(exists(first_dir)); // the earlier dir became this one
  CHECK(contains(run.err, "403 of 403 files cached"));
  CHECK(run.has_stdout_line(label + "tmp entries: 0"));
  // Files were kept in place, not written again (most of them: the newest may not be).
  std::vector<long> kept; // per bundle, from "..., N of them kept in place"
  std::istringstream log(c[0].log());
  for (std::string line; std::getline(log, line);) {
    const auto at = line.find(" of them kept in place");
    if (at != std::string::npos) {
      kept.push_back(std::atol(line.substr(line.rfind(' ', at - 1) + 1).c_str()));
    }
  }
  CAPTURE(c[0].log());
  REQUIRE(kept.size() == 2);
  CHECK(kept[0] == 0);
  CHECK(kept[1] > 0);
  // The dir was watched since its seal: the entries the job did not touch needed no stat.
  CHECK(contains(c[0].log(), "of the last job dir untouched since it was sealed"));

  // A fresh dir (--keep never reuses) holds exactly the same: nothing of the first job is left.
  const MasterRun fresh = c.run({"--keep", "--send", src + "/", "--cmd",
                                 std::string("echo \"dir=$(pwd)\"; ") + k_describe_job_dir});
  REQUIRE(fresh.exit_code == 0);
  CHECK(without_dir_lines(run.stdout_lines()) == without_dir_lines(fresh.stdout_lines()));
  CHECK(run.stdout_lines().size() > 800);

  // Changes that leave no trace in the files' directories: a write through a hard link made
  // in TMPDIR (then removed) and one through a shared mapping, both the same size.
  const MasterRun sneaky = c.run(
      {"--send", src + "/", "--cmd",
       "ln d2/f2.txt \"$TMPDIR/h\" && printf X | dd of=\"$TMPDIR/h\" bs=1 count=1 conv=notrunc "
       "2>/dev/null && rm \"$TMPDIR/h\" && python3 -c 'import mmap; f = open(\"a.txt\", "
       "\"r+b\"); m = mmap.mmap(f.fileno(), 0); m[0:1] = b\"Y\"; m.flush()' && cut -c1 "
       "d2/f2.txt a.txt"});
  CAPTURE(sneaky.err);
  REQUIRE(sneaky.exit_code == 0);
  CHECK(sneaky.has_stdout_line(label + "X"));
  CHECK(sneaky.has_stdout_line(label + "Y"));
  run = c.run(
      {"--send", src + "/", "--cmd", std::string("echo \"dir=$(pwd)\"; ") + k_describe_job_dir});
  REQUIRE(run.exit_code == 0);
  CHECK(without_dir_lines(run.stdout_lines()) == without_dir_lines(fresh.stdout_lines()));
}

TEST_CASE("e2e: jobdir: a worker with --no-cache removes every job dir and reuses none")
{
  WorkerConfig config;
  config.extra = {"--no-cache"};
  Cluster c(1, config);
  const std::string label = c[0].address() + " | ";
  write_file(c.dir / "src/a.txt", "alpha\n");
  const std::vector<std::string> args = {"--send", c.dir / "src/", "--cmd", "echo \"dir=$(pwd)\""};
  const MasterRun run = c.run(args);
  REQUIRE(run.exit_code == 0);
  const std::string dir = line_value(run.out, label + "dir=");
  REQUIRE(!dir.empty());
  CHECK(wait_until([&] { return !exists(dir); }));
  CHECK(contains(c.run(args).err, "0 of 1 files cached"));
}

TEST_CASE("e2e: jobdir: a dir that an escaped process of the job still works in is not reused")
{
  WorkerConfig config;
  config.extra = {"--verbose"};
  Cluster c(1, config);
  const std::string label = c[0].address() + " | ";
  write_file(c.dir / "src/a.txt", "alpha\n");
  // A new session and an empty environment: neither the group kill nor the job marker finds it.
  MasterRun run =
      c.run({"--send", c.dir / "src/", "--cmd",
             "echo \"dir=$(pwd)\"; setsid env -i sleep 20 </dev/null >/dev/null 2>&1 & "
             "bg=$!; echo \"bg=$bg\"; "
             // until it has dropped its environment (and with it the job's marker)
             "while grep -qa DISTCOMP /proc/$bg/environ 2>/dev/null; do sleep 0.05; done"});
  CAPTURE(run.out);
  REQUIRE(run.exit_code == 0);
  const std::string first_dir = line_value(run.out, label + "dir=");
  const pid_t bg = static_cast<pid_t>(std::atol(line_value(run.out, label + "bg=").c_str()));
  REQUIRE(bg > 0);
  REQUIRE(::kill(bg, 0) == 0); // still running
  CHECK(wait_until(
      [&] { return contains(c[0].log(), "still uses its dir; it will not be reused"); }));
  CHECK(wait_until([&] { return !exists(first_dir); })); // removed, as without reuse

  run = c.run({"--send", c.dir / "src/", "--cmd", "echo \"dir=$(pwd)\"; cat a.txt"});
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line(label + "alpha"));
  CHECK_FALSE(contains(c[0].log(), "1 of them kept in place"));
  ::kill(bg, SIGKILL);
}

TEST_CASE("e2e: jobdir: a RUN after a HELLO that announced a bundle, but before it, is refused")
{
  WorkerConfig config;
  config.extra = {"--verbose"};
  Cluster c(1, config);
  write_file(c.dir / "src/secret.txt", "the last job's file\n");
  REQUIRE(c.run({"--send", c.dir / "src/", "--cmd", "true"}).exit_code == 0); // parks its dir
  CHECK(wait_until([&] { return contains(c[0].log(), ": closed"); }));

  // HELLO says a bundle follows, so the worker takes the last job dir at once; a RUN instead of
  // the bundle must not run in it.
  RawClient client(c[0].address(), c.key);
  client.handshake();
  dc::Hello hello;
  hello.client = "distcomp raw test client";
  hello.name = "no-bundle";
  hello.bundle = true;
  client.hello(hello);
  const std::string marker = c.dir / "ran";
  dc::RunBody body;
  body.id = 1;
  body.sh = "cat secret.txt > '" + marker + "'";
  client.send_json(dc::RecordType::run, dc::to_json(body));
  const UntilClosed end = client.until_closed();
  CHECK(end.closed);
  CHECK(end.first_error_code() == "protocol");
  CHECK_FALSE(exists(marker));

  // The next job with files is written as always.
  const MasterRun run = c.run({"--send", c.dir / "src/", "--cmd", "cat secret.txt"});
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line(c[0].address() + " | the last job's file"));
}
