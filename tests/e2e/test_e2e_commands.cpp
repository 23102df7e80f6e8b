// End-to-end: commands (order, shared directory, first failure, -S, `--`), the job environment,
// and background processes that a command leaves behind.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <set>
#include <sstream>

using namespace dc::test;
using namespace std::chrono_literals;

namespace {

// Every `label | <prefix>VALUE` line on stdout, in order, as VALUE.
std::vector<std::string> values(const MasterRun& run, const std::string& label,
                                const std::string& prefix)
{
  std::vector<std::string> out;
  const std::string head = label + " | " + prefix;
  for (const auto& l : run.stdout_lines()) {
    if (l.rfind(head, 0) == 0) {
      out.push_back(l.substr(head.size()));
    }
  }
  return out;
}

std::string one_value(const MasterRun& run, const std::string& label, const std::string& prefix)
{
  const auto v = values(run, label, prefix);
  return v.size() == 1 ? v.front() : "";
}

} // namespace

TEST_CASE(
    "e2e: commands: several --cmd run in order in one directory and stop at the first failure")
{
  Cluster c(1);
  const std::string label = c[0].address();
  const std::vector<std::string> cmds = {"--cmd", "echo made > f.txt; echo first",     //
                                         "--cmd", "echo \"second read $(cat f.txt)\"", //
                                         "--cmd", "echo third; exit 5",                //
                                         "--cmd", "echo fourth ran"};
  MasterRun run = c.run(cmds);
  CHECK(run.exit_code == 1);
  CHECK(run.stdout_lines() == std::vector<std::string>{label + " | first",
                                                       label + " | second read made",
                                                       label + " | third"});
  CHECK(run.out.find("fourth ran") == std::string::npos);
  CHECK(run.err.find("failed") != std::string::npos);
  CHECK(run.err.find("exit 5") != std::string::npos);

  std::vector<std::string> with_s = {"-S"};
  with_s.insert(with_s.end(), cmds.begin(), cmds.end());
  run = c.run(with_s);
  CHECK(run.exit_code == 5);
  CHECK(run.out.find("fourth ran") == std::string::npos);
}

TEST_CASE("e2e: commands: -S gives the largest remote exit code and 128+N for a signal")
{
  Cluster c(2);
  // node 0 exits 3, node 1 exits 7
  MasterRun run = c.run({"--cmd", "exit $((3 + 4 * DISTCOMP_NODE_ID))"});
  CHECK(run.exit_code == 1);
  run = c.run({"-S", "--cmd", "exit $((3 + 4 * DISTCOMP_NODE_ID))"});
  CHECK(run.exit_code == 7);
  run = c.run({"-S", "--cmd", "exit 0"});
  CHECK(run.exit_code == 0);
  run = c.run({"-S", "--cmd", "if [ $DISTCOMP_NODE_ID = 1 ]; then kill -TERM $$; fi; exit 2"});
  CHECK(run.exit_code == 128 + 15);
}

TEST_CASE("e2e: commands: `master --peers p -- echo hi there` runs the words after --")
{
  Cluster c(2);
  const MasterRun run = c.run({"--", "echo", "hi", "there"});
  CHECK(run.exit_code == 0);
  CHECK(run.has_stdout_line(c[0].address() + " | hi there"));
  CHECK(run.has_stdout_line(c[1].address() + " | hi there"));
  CHECK(run.stdout_lines().size() == 2);
}

TEST_CASE("e2e: commands: the job environment has the DISTCOMP_ variables and --env but nothing of "
          "the worker's own environment")
{
  WorkerConfig config;
  config.env = {"SECRET_TEST_VAR=hunter2", "DC_E2E_LEAK=leaked"};
  Cluster c(2, config);
  const std::string cmd = R"sh(
echo "vars=$DISTCOMP_NODE_ID $DISTCOMP_N_NODES $DISTCOMP_NODE_NAME $DISTCOMP_RANK $DISTCOMP_SIZE"
echo "job=$DISTCOMP_JOB_ID"; echo "foo=$FOO"; echo "secret=${SECRET_TEST_VAR-unset}"
case "$TMPDIR" in "$(pwd)"/*) echo "tmpdir=inside";; *) echo "tmpdir=$TMPDIR";; esac
env | sed 's/=.*//' | sort | tr '\n' ' ' | sed 's/^/names=/'; echo
)sh";
  const MasterRun run = c.run({"--env", "FOO=bar baz", "--cmd", cmd});
  REQUIRE(run.exit_code == 0);
  const MasterRun again = c.run({"--cmd", "echo job=$DISTCOMP_JOB_ID"});
  REQUIRE(again.exit_code == 0);

  // CPATH and PYTHONPATH carry the messaging clients (README: Node-to-node messages).
  const std::set<std::string> allowed = {"PATH",   "HOME",   "USER",  "LOGNAME",   "LANG",
                                         "TZ",     "TMPDIR", "FOO",   "PWD",       "SHLVL",
                                         "OLDPWD", "_",      "CPATH", "PYTHONPATH"};
  for (std::size_t i = 0; i < c.size(); ++i) {
    const std::string label = c[i].address();
    const std::string n = std::to_string(i);
    CAPTURE(label);
    CHECK(one_value(run, label, "vars=") == n + " 2 " + label + " " + n + " 2");
    CHECK(one_value(run, label, "foo=") == "bar baz");
    CHECK(one_value(run, label, "secret=") == "unset");
    CHECK(one_value(run, label, "tmpdir=") == "inside");
    std::istringstream names(one_value(run, label, "names="));
    std::string name;
    std::vector<std::string> unexpected;
    while (names >> name) {
      if (allowed.count(name) == 0 && name.rfind("LC_", 0) != 0 &&
          name.rfind("DISTCOMP_", 0) != 0) {
        unexpected.push_back(name);
      }
    }
    CHECK(unexpected.empty());
    CHECK(run.out.find("hunter2") == std::string::npos);
    CHECK(run.out.find("DC_E2E_LEAK") == std::string::npos);
  }
  const std::string job = one_value(run, c[0].address(), "job=");
  CHECK(job.size() >= 8);
  CHECK(one_value(run, c[1].address(), "job=") == job);
  const std::string job2 = one_value(again, c[0].address(), "job=");
  CHECK(one_value(again, c[1].address(), "job=") == job2);
  CHECK(job2.size() >= 8);
  CHECK(job2 != job);
}

TEST_CASE("e2e: commands: TMPDIR is a usable directory inside the job directory")
{
  Cluster c(1);
  const MasterRun run =
      c.run({"--cmd", R"sh(test -d "$TMPDIR" || { echo "no directory $TMPDIR" >&2; exit 1; }
f=$(mktemp) && echo "made ${f#$(pwd)/}")sh"});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.out.find(c[0].address() + " | made ") != std::string::npos);
}

TEST_CASE(
    "e2e: commands: `sleep 300 & echo started` ends promptly and the background sleep is killed")
{
  Cluster c(1);
  const auto started = std::chrono::steady_clock::now();
  const MasterRun run = c.run({"--cmd", "sleep 300 & echo \"job=$DISTCOMP_JOB_ID\""}, 60s);
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  CHECK(run.exit_code == 0);
  const std::string job = one_value(run, c[0].address(), "job=");
  REQUIRE(!job.empty());
  // The worker kills leftovers before its BYE, so they are gone once the master has exited.
  CHECK(processes_with_env("DISTCOMP_JOB_ID=" + job).empty());
}

TEST_CASE("e2e: commands: a background process that escaped with setsid is killed at the end")
{
  Cluster c(1);
  const MasterRun run =
      c.run({"--cmd", "setsid sleep 300 & setsid sh -c 'sleep 301 >/dev/null 2>&1' & "
                      "echo \"job=$DISTCOMP_JOB_ID\""},
            60s);
  CHECK(run.exit_code == 0);
  const std::string job = one_value(run, c[0].address(), "job=");
  REQUIRE(!job.empty());
  CHECK(processes_with_env("DISTCOMP_JOB_ID=" + job).empty());
}

TEST_CASE("e2e: commands: a --cmd or --env value containing a comma is passed on as written")
{
  Cluster c(1);
  const std::string label = c[0].address() + " | ";
  MasterRun run = c.run({"--cmd", "echo a,b"});
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.stdout_lines() == std::vector<std::string>{label + "a,b"});
  run = c.run({"--env", "LIST=x,y", "--cmd", "echo \"list=$LIST\""});
  CHECK(run.exit_code == 0);
  CHECK(run.stdout_lines() == std::vector<std::string>{label + "list=x,y"});
}
